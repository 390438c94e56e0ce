#ifndef HVSTACK_VMWP_VSP_IC_UTF16_H_
#define HVSTACK_VMWP_VSP_IC_UTF16_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace vsp::ic {

// UTF-8 -> UTF-16LE into `out` (capacity bytes), always NUL-terminated,
// truncated at a character boundary. Returns the bytes used, NUL included.
// Invalid UTF-8 becomes U+FFFD.
size_t EncodeUtf16(std::string_view utf8, uint8_t* out, size_t capacity);

// UTF-16LE (up to the first NUL or the end) -> UTF-8. Unpaired surrogates
// become U+FFFD. Odd trailing bytes are ignored.
std::string DecodeUtf16(std::span<const uint8_t> utf16le);

}  // namespace vsp::ic

#endif  // HVSTACK_VMWP_VSP_IC_UTF16_H_
