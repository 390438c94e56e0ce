#ifndef HVSTACK_VMWP_VSP_NET_LENT_BUFFER_H_
#define HVSTACK_VMWP_VSP_NET_LENT_BUFFER_H_

// A buffer the guest lent the host through a GPADL (netvsc's receive buffer,
// which the host fills, and its send buffer, which the host reads). The
// guest can take it back at any time (GPADL_TEARDOWN): Revoke() waits for a
// copy in progress and makes every later access fail, so that the host
// never touches the pages after the guest heard they are free.

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "vmwp/vmbus/gpa_direct.h"

namespace vsp::net {

class LentBuffer {
 public:
  // `id` is the buffer id the guest gave in SEND_RECV_BUF / SEND_SEND_BUF.
  LentBuffer(vmbus::MappedGpadl mapped, uint16_t id);

  uint32_t handle() const { return handle_; }
  uint16_t id() const { return id_; }
  uint32_t size() const { return size_; }

  // Writes the pieces back to back from `offset`. false: revoked, or the
  // range is not inside the buffer (nothing written).
  bool Write(uint32_t offset,
             std::initializer_list<std::span<const uint8_t>> pieces);
  // Copies [offset, offset + len) out. false: revoked or out of range.
  bool Read(uint32_t offset, uint8_t* dst, uint32_t len);

  // Waits for an access in progress; every later one fails.
  void Revoke();
  bool revoked() const;

 private:
  template <typename Fn>
  void ForEachPage(uint32_t offset, uint32_t len, Fn fn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint32_t handle_;
  const uint16_t id_;
  const uint32_t size_;
  const std::vector<uint8_t*> pages_;
  mutable absl::Mutex mu_;
  bool revoked_ ABSL_GUARDED_BY(mu_) = false;
};

// The buffers an adapter has in use, by GPADL handle: the device thread adds
// and removes them, Vsp::OnGpadlTeardown (a VP thread) revokes them.
class LentBuffers {
 public:
  void Add(std::shared_ptr<LentBuffer> buffer);
  void Remove(uint32_t handle);
  // Revokes the buffer with `handle` (waiting for a copy in progress) and
  // forgets it. false: no such buffer.
  bool Revoke(uint32_t handle);

 private:
  absl::Mutex mu_;
  std::vector<std::shared_ptr<LentBuffer>> buffers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vsp::net

#endif  // HVSTACK_VMWP_VSP_NET_LENT_BUFFER_H_
