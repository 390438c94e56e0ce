#include "vmwp/vsp/storage/iovecs.h"

#include <algorithm>
#include <cstring>

namespace vsp::storage {

size_t CopyToIovecs(std::span<const uint8_t> from, std::span<const iovec> to) {
  size_t done = 0;
  for (const iovec& v : to) {
    if (done == from.size()) break;
    const size_t n = std::min(v.iov_len, from.size() - done);
    std::memcpy(v.iov_base, from.data() + done, n);
    done += n;
  }
  return done;
}

size_t CopyFromIovecs(std::span<const iovec> from, std::span<uint8_t> to) {
  size_t done = 0;
  for (const iovec& v : from) {
    if (done == to.size()) break;
    const size_t n = std::min(v.iov_len, to.size() - done);
    std::memcpy(to.data() + done, v.iov_base, n);
    done += n;
  }
  return done;
}

void TruncateIovecs(std::vector<iovec>& iov, uint64_t bytes) {
  size_t keep = 0;
  for (; keep < iov.size() && bytes > 0; ++keep) {
    iov[keep].iov_len = std::min<uint64_t>(iov[keep].iov_len, bytes);
    bytes -= iov[keep].iov_len;
  }
  iov.resize(keep);
}

}  // namespace vsp::storage
