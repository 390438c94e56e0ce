#ifndef HVSTACK_VMWP_VSP_STORAGE_IOVECS_H_
#define HVSTACK_VMWP_VSP_STORAGE_IOVECS_H_

// Copies between host bytes and the iovecs of a request's guest buffer
// (vmbus::GuestScatter::Iovecs), for replies built in host memory (INQUIRY,
// MODE SENSE, ...) and for the NBD backend's bounce buffers.

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

namespace vsp::storage {

// Both return the bytes copied: the smaller of both sizes.
size_t CopyToIovecs(std::span<const uint8_t> from, std::span<const iovec> to);
size_t CopyFromIovecs(std::span<const iovec> from, std::span<uint8_t> to);
// Cuts `iov` to its first `bytes` bytes, in place.
void TruncateIovecs(std::vector<iovec>& iov, uint64_t bytes);

}  // namespace vsp::storage

#endif  // HVSTACK_VMWP_VSP_STORAGE_IOVECS_H_
