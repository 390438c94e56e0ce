#include "vmms/uuid.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/str_format.h"

namespace vmms {

std::string NewUuidV4() {
  uint8_t b[16];
  size_t done = 0;
  while (done < sizeof(b)) {
    ssize_t n = ::getrandom(b + done, sizeof(b) - done, 0);
    if (n < 0 && errno == EINTR) continue;
    // getrandom only fails on a kernel without it or a bad buffer; neither can
    // be handled here.
    if (n < 0) std::abort();
    done += static_cast<size_t>(n);
  }
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // variant 10xx
  return absl::StrFormat(
      "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
      b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
      b[12], b[13], b[14], b[15]);
}

}  // namespace vmms
