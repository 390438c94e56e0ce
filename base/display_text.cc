#include "base/display_text.h"

#include <cstdint>
#include <vector>

namespace base {
namespace {

// Length of the valid UTF-8 sequence starting at bytes[i] (1-4), or 0 when
// bytes[i] does not start one (overlong forms, surrogates and code points
// above U+10FFFF are invalid, as in RFC 3629).
size_t Utf8SequenceLength(std::string_view bytes, size_t i) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(bytes[i + k]); };
  const size_t left = bytes.size() - i;
  const uint8_t c = b(0);
  if (c < 0x80) return 1;
  auto cont = [&](size_t k) { return k < left && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;  // overlong
    if (c == 0xED && b(1) > 0x9F) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
    if (c == 0xF4 && b(1) > 0x8F) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

// The display pieces of `bytes`, each an indivisible unit (a character or an
// escape).
std::vector<std::string> Pieces(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::vector<std::string> pieces;
  for (size_t i = 0; i < bytes.size();) {
    const auto c = static_cast<uint8_t>(bytes[i]);
    const size_t n = Utf8SequenceLength(bytes, i);
    const bool control =
        n == 1 && (c < 0x20 || c == 0x7F) && c != '\n' && c != '\t';
    if (n == 0 || control) {
      pieces.push_back({'\\', 'x', kHex[c >> 4], kHex[c & 0xF]});
      ++i;
    } else {
      pieces.emplace_back(bytes.substr(i, n));
      i += n;
    }
  }
  return pieces;
}

}  // namespace

std::string DisplayText(std::string_view bytes, size_t max_bytes) {
  std::string out;
  for (const std::string& piece : Pieces(bytes)) {
    if (out.size() + piece.size() > max_bytes) break;
    out += piece;
  }
  return out;
}

std::string DisplayTextTail(std::string_view bytes, size_t max_bytes) {
  // Only the last max_bytes input bytes can show (a piece is never shorter
  // than its input); three more let a UTF-8 sequence cut by that window be
  // recognised and escaped whole rather than misread.
  if (bytes.size() > max_bytes + 3)
    bytes = bytes.substr(bytes.size() - max_bytes - 3);
  std::vector<std::string> pieces = Pieces(bytes);
  size_t total = 0;
  size_t first = pieces.size();
  while (first > 0 && total + pieces[first - 1].size() <= max_bytes) {
    total += pieces[--first].size();
  }
  std::string out;
  out.reserve(total);
  for (size_t k = first; k < pieces.size(); ++k) out += pieces[k];
  return out;
}

}  // namespace base
