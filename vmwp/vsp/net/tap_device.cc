#include "vmwp/vsp/net/tap_device.h"

#include <errno.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_format.h"

namespace vsp::net {

TapDevice::TapDevice(base::ScopedFd fd, bool vnet_header)
    : fd_(std::move(fd)), vnet_header_(vnet_header) {}

absl::Status TapDevice::Write(
    std::span<const std::span<const uint8_t>> pieces) {
  static const VirtioNetHeader kNoOffload{};
  iovec iov[5];
  int n = 0;
  if (vnet_header_) {
    iov[n++] = {const_cast<VirtioNetHeader*>(&kNoOffload), sizeof(kNoOffload)};
  }
  size_t total = 0;
  for (const std::span<const uint8_t>& p : pieces) {
    if (n == 5) return absl::InvalidArgumentError("too many frame pieces");
    iov[n++] = {const_cast<uint8_t*>(p.data()), p.size()};
    total += p.size();
  }
  for (;;) {
    const ssize_t w = ::writev(fd_.get(), iov, n);
    if (w >= 0) {
      const size_t want = total + (vnet_header_ ? sizeof(VirtioNetHeader) : 0);
      if (static_cast<size_t>(w) != want) {
        return absl::DataLossError(
            absl::StrFormat("TAP write took %d of %d bytes", w, want));
      }
      return absl::OkStatus();
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return absl::UnavailableError("TAP queue full");
    return absl::ErrnoToStatus(errno, "TAP write");
  }
}

absl::StatusOr<size_t> TapDevice::Read(std::span<uint8_t> buffer) {
  VirtioNetHeader header{};
  iovec iov[2];
  int n = 0;
  if (vnet_header_) iov[n++] = {&header, sizeof(header)};
  iov[n++] = {buffer.data(), buffer.size()};
  ssize_t r;
  for (;;) {
    r = ::readv(fd_.get(), iov, n);
    if (r >= 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return 0;
    return absl::ErrnoToStatus(errno, "TAP read");
  }
  size_t length = static_cast<size_t>(r);
  if (vnet_header_) {
    if (length < sizeof(header)) {
      return absl::DataLossError(absl::StrFormat(
          "TAP read of %d bytes is shorter than its virtio-net header", r));
    }
    length -= sizeof(header);
  }
  if (length == buffer.size()) {
    // The kernel truncates a frame that does not fit; a full buffer may be
    // one. Buffers are sized above the largest frame the adapter passes.
    return absl::OutOfRangeError(absl::StrFormat(
        "TAP frame of at least %d bytes fills the read buffer", length));
  }
  if (vnet_header_) {
    if (header.gso_type != kVirtioNetGsoNone) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "TAP frame asks for segmentation (gso_type %d); offloads are off",
          header.gso_type));
    }
    if ((header.flags & kVirtioNetHeaderNeedsChecksum) &&
        !CompleteChecksum(buffer.first(length), header.checksum_start,
                          header.checksum_offset)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "TAP frame's partial checksum (start %d, offset %d) is outside its "
          "%d bytes",
          header.checksum_start, header.checksum_offset, length));
    }
  }
  return length;
}

bool CompleteChecksum(std::span<uint8_t> frame, uint16_t start,
                      uint16_t offset) {
  if (start >= frame.size() || uint32_t{start} + offset + 2 > frame.size()) {
    return false;
  }
  uint64_t sum = 0;
  const uint8_t* p = frame.data() + start;
  size_t n = frame.size() - start;
  for (; n >= 2; p += 2, n -= 2) sum += (uint32_t{p[0]} << 8) | p[1];
  if (n == 1) sum += uint32_t{p[0]} << 8;
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  const uint16_t checksum = static_cast<uint16_t>(~sum);
  frame[start + offset] = static_cast<uint8_t>(checksum >> 8);
  frame[start + offset + 1] = static_cast<uint8_t>(checksum);
  return true;
}

}  // namespace vsp::net
