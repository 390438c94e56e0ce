#include "vmwp/acpi/aml.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace vmwp::acpi::aml {
namespace {

// Opcodes (ACPI 6.x, 20.3).
constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
constexpr uint8_t kBytePrefix = 0x0A;
constexpr uint8_t kWordPrefix = 0x0B;
constexpr uint8_t kDWordPrefix = 0x0C;
constexpr uint8_t kStringPrefix = 0x0D;
constexpr uint8_t kQWordPrefix = 0x0E;
constexpr uint8_t kScopeOp = 0x10;
constexpr uint8_t kBufferOp = 0x11;
constexpr uint8_t kPackageOp = 0x12;
constexpr uint8_t kExtOpPrefix = 0x5B;
constexpr uint8_t kDeviceOp = 0x82;  // after kExtOpPrefix
constexpr uint8_t kOnesOp = 0xFF;
constexpr uint8_t kRootChar = '\\';
constexpr uint8_t kDualNamePrefix = 0x2E;
constexpr uint8_t kMultiNamePrefix = 0x2F;

absl::Status AppendNameSeg(Bytes& out, absl::string_view seg) {
  if (seg.empty() || seg.size() > 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AML: name segment \"", seg, "\" must be 1 to 4 characters"));
  }
  for (size_t i = 0; i < seg.size(); ++i) {
    const char c = seg[i];
    const bool ok =
        c == '_' || absl::ascii_isupper(c) || (i > 0 && absl::ascii_isdigit(c));
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("AML: name segment \"", seg,
                       "\" must be [A-Z_] followed by [A-Z0-9_]"));
    }
  }
  AppendFixedString(out, seg, 4, '_');
  return absl::OkStatus();
}

// Wraps `content` as `opcode PkgLength content`, the shape of every
// variable-length term.
Term WithPkgLength(const Bytes& opcode, const Bytes& content) {
  absl::StatusOr<Bytes> length = PkgLength(content.size());
  if (!length.ok()) return length.status();
  Bytes out = opcode;
  out.insert(out.end(), length->begin(), length->end());
  out.insert(out.end(), content.begin(), content.end());
  return out;
}

// Appends each term in order, or returns the first error among them.
absl::Status AppendTerms(Bytes& out, const std::vector<Term>& terms) {
  for (const Term& term : terms) {
    if (!term.ok()) return term.status();
    out.insert(out.end(), term->begin(), term->end());
  }
  return absl::OkStatus();
}

Term NamedBlock(const Bytes& opcode, absl::string_view name,
                const std::vector<Term>& terms) {
  Term content = NameString(name);
  if (!content.ok()) return content.status();
  if (absl::Status s = AppendTerms(*content, terms); !s.ok()) return s;
  return WithPkgLength(opcode, *content);
}

int HexValue(char c) {
  if (absl::ascii_isdigit(c)) return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

absl::StatusOr<Bytes> PkgLength(size_t content_length) {
  // The encoded value includes the PkgLength bytes themselves, so its size
  // depends on itself: pick the smallest encoding whose capacity holds content
  // plus that encoding.
  if (content_length + 1 <= 0x3F) {
    return Bytes{static_cast<uint8_t>(content_length + 1)};
  }
  for (size_t extra = 1; extra <= 3; ++extra) {
    const size_t total = content_length + 1 + extra;
    if (total < (size_t{1} << (4 + 8 * extra))) {
      Bytes out;
      out.push_back(static_cast<uint8_t>((extra << 6) | (total & 0x0F)));
      for (size_t i = 0; i < extra; ++i) {
        out.push_back(static_cast<uint8_t>(total >> (4 + 8 * i)));
      }
      return out;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("AML: a package of ", content_length,
                   " bytes exceeds the 28-bit PkgLength"));
}

Term NameString(absl::string_view path) {
  Bytes out;
  if (!path.empty() && path.front() == '\\') {
    out.push_back(kRootChar);
    path.remove_prefix(1);
  }
  const std::vector<absl::string_view> segs = absl::StrSplit(path, '.');
  if (segs.size() == 2) {
    out.push_back(kDualNamePrefix);
  } else if (segs.size() > 2) {
    if (segs.size() > 255)
      return absl::InvalidArgumentError("AML: name path too long");
    out.push_back(kMultiNamePrefix);
    out.push_back(static_cast<uint8_t>(segs.size()));
  }
  for (absl::string_view seg : segs) {
    if (absl::Status s = AppendNameSeg(out, seg); !s.ok()) return s;
  }
  return out;
}

Bytes Integer(uint64_t value) {
  Bytes out;
  if (value == 0) {
    out.push_back(kZeroOp);
  } else if (value == 1) {
    out.push_back(kOneOp);
  } else if (value == ~uint64_t{0}) {
    out.push_back(kOnesOp);
  } else if (value <= 0xFF) {
    out.push_back(kBytePrefix);
    AppendLe(out, value, 1);
  } else if (value <= 0xFFFF) {
    out.push_back(kWordPrefix);
    AppendLe(out, value, 2);
  } else if (value <= 0xFFFFFFFF) {
    out.push_back(kDWordPrefix);
    AppendLe(out, value, 4);
  } else {
    out.push_back(kQWordPrefix);
    AppendLe(out, value, 8);
  }
  return out;
}

Term String(absl::string_view text) {
  Bytes out{kStringPrefix};
  for (char c : text) {
    if (c == '\0' || !absl::ascii_isascii(c)) {
      return absl::InvalidArgumentError("AML: strings are ASCII without NUL");
    }
    out.push_back(static_cast<uint8_t>(c));
  }
  out.push_back(0);
  return out;
}

Term EisaId(absl::string_view id) {
  bool ok = id.size() == 7;
  for (size_t i = 0; ok && i < 3; ++i) ok = absl::ascii_isupper(id[i]);
  for (size_t i = 3; ok && i < 7; ++i) ok = HexValue(id[i]) >= 0;
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("AML: EISA id \"", id,
                     "\" must be 3 upper-case letters and 4 hex digits"));
  }
  // Letters are 5 bits each ('A' = 1), then the product number; the result is
  // stored big-endian, which as a little-endian DWord looks byte-swapped.
  uint32_t packed = 0;
  for (size_t i = 0; i < 3; ++i)
    packed = (packed << 5) | static_cast<uint32_t>(id[i] - '@');
  for (size_t i = 3; i < 7; ++i)
    packed = (packed << 4) | static_cast<uint32_t>(HexValue(id[i]));
  Bytes out{kDWordPrefix};
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<uint8_t>(packed >> shift));
  return out;
}

Term Name(absl::string_view name, const Term& object) {
  if (!object.ok()) return object.status();
  Term out = NameString(name);
  if (!out.ok()) return out.status();
  out->insert(out->begin(), kNameOp);
  out->insert(out->end(), object->begin(), object->end());
  return out;
}

Term Package(const std::vector<Term>& elements) {
  if (elements.size() > 255) {
    return absl::InvalidArgumentError(
        "AML: a Package holds at most 255 elements");
  }
  Bytes content{static_cast<uint8_t>(elements.size())};
  if (absl::Status s = AppendTerms(content, elements); !s.ok()) return s;
  return WithPkgLength({kPackageOp}, content);
}

Term Buffer(const Bytes& data) {
  Bytes content = Integer(data.size());
  content.insert(content.end(), data.begin(), data.end());
  return WithPkgLength({kBufferOp}, content);
}

Term Scope(absl::string_view path, const std::vector<Term>& terms) {
  return NamedBlock({kScopeOp}, path, terms);
}

Term Device(absl::string_view name, const std::vector<Term>& terms) {
  return NamedBlock({kExtOpPrefix, kDeviceOp}, name, terms);
}

}  // namespace vmwp::acpi::aml
