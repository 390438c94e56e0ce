#ifndef HVSTACK_VMWP_VSP_NET_TAP_DEVICE_H_
#define HVSTACK_VMWP_VSP_NET_TAP_DEVICE_H_

// The host end of a network adapter: a TAP descriptor vmms opened in the
// host's namespace (IFF_TAP | IFF_NO_PI, maybe IFF_VNET_HDR; O_NONBLOCK) and
// handed to the worker, which opens nothing. One read is one frame, one
// write is one frame. With a virtio-net header, each frame is preceded by
// the 10-byte struct virtio_net_hdr (include/uapi/linux/virtio_net.h); vmms
// sets no offloads (TUNSETOFFLOAD 0), so the kernel hands over complete
// frames, and the host writes headers that ask for nothing.
//
// Any descriptor with datagram semantics works the same (tests use a
// SOCK_SEQPACKET socketpair in place of a TAP device).

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/scoped_fd.h"

namespace vsp::net {

#pragma pack(push, 1)
struct VirtioNetHeader {
  uint8_t flags;  // VIRTIO_NET_HDR_F_NEEDS_CSUM = 1, DATA_VALID = 2
  uint8_t gso_type;
  uint16_t header_length;
  uint16_t gso_size;
  uint16_t checksum_start;
  uint16_t checksum_offset;
};
#pragma pack(pop)
static_assert(sizeof(VirtioNetHeader) == 10);
inline constexpr uint8_t kVirtioNetHeaderNeedsChecksum = 1;
inline constexpr uint8_t kVirtioNetGsoNone = 0;

class TapDevice {
 public:
  TapDevice(base::ScopedFd fd, bool vnet_header);

  int fd() const { return fd_.get(); }
  bool vnet_header() const { return vnet_header_; }

  // Writes one frame made of `pieces` (at most 4). Unavailable when the
  // device would block; other errors as the errno says.
  absl::Status Write(std::span<const std::span<const uint8_t>> pieces);

  // Reads one frame into `buffer`: its length, or 0 when none is waiting.
  // A frame whose virtio header asks for segmentation is refused
  // (InvalidArgument; the frame is consumed); a partial checksum
  // (NEEDS_CSUM) is completed here. A frame longer than `buffer` is cut
  // short by the kernel: OutOfRange.
  absl::StatusOr<size_t> Read(std::span<uint8_t> buffer);

 private:
  base::ScopedFd fd_;
  const bool vnet_header_;
};

// The Internet checksum of `bytes` folded and complemented, stored at
// `bytes[start + offset]` (what VIRTIO_NET_HDR_F_NEEDS_CSUM asks for: the
// one's-complement sum from `start` to the end, seeded by what is already in
// the checksum field). false if start/offset are outside the frame.
bool CompleteChecksum(std::span<uint8_t> frame, uint16_t start,
                      uint16_t offset);

}  // namespace vsp::net

#endif  // HVSTACK_VMWP_VSP_NET_TAP_DEVICE_H_
