#ifndef HVSTACK_BASE_DISPLAY_TEXT_H_
#define HVSTACK_BASE_DISPLAY_TEXT_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace base {

// Bytes from an untrusted source (a guest's crash message, a log line it
// caused) made safe to show in a terminal, a log or a JSON field: valid UTF-8
// is kept, newline and tab too; every other control character (ESC, CR, NUL,
// DEL ...) and every byte that is not part of valid UTF-8 becomes "\xNN". The
// result is at most `max_bytes` long, never cut inside an escape or a UTF-8
// sequence: DisplayText keeps the start of `bytes`, DisplayTextTail its end
// (for logs, whose newest lines matter most).
std::string DisplayText(std::string_view bytes, size_t max_bytes);
std::string DisplayTextTail(std::string_view bytes, size_t max_bytes);

}  // namespace base

#endif  // HVSTACK_BASE_DISPLAY_TEXT_H_
