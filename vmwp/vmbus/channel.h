#ifndef HVSTACK_VMWP_VMBUS_CHANNEL_H_
#define HVSTACK_VMWP_VMBUS_CHANNEL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "vmwp/vmbus/ring_buffer.h"
#include "vmwp/vmbus/synic_seam.h"
#include "vmwp/vmbus/vsp.h"

namespace vmbus {

// How the host interrupts the guest for a channel.
struct ChannelSignal {
  SynicPort* synic = nullptr;
  uint8_t sint = kVmbusMessageSint;
  // WIN7 guests look for the relid bit in the receive half of their
  // interrupt page and take event flag 0 as "look there"; later versions
  // get the relid as the event flag itself.
  uint8_t* win7_interrupt_page = nullptr;
};

// An open channel: the pair of rings and the locks that serialize them. The
// guest's outbound ring is read when the guest signals (Drain); the VSP
// writes the guest's inbound ring through Send.
class LiveChannel final : public ChannelEndpoint {
 public:
  // Resolves a GPADL handle of this channel for MapGpadl (the server's).
  using GpadlMapper = std::function<absl::StatusOr<MappedGpadl>(uint32_t)>;

  LiveChannel(uint32_t relid, uint32_t target_vp, RingReader in, RingWriter out,
              ChannelSignal signal, GuestPages& memory,
              GpadlMapper map_gpadl = nullptr);

  uint32_t relid() const override { return relid_; }
  using ChannelEndpoint::Send;
  absl::StatusOr<WriteResult> Send(uint16_t type, uint16_t flags,
                                   uint64_t trans_id,
                                   std::span<const uint8_t> extension,
                                   std::span<const uint8_t> payload) override;

  // Delivers every packet in the guest's outbound ring to `vsp` (the
  // interrupt-mask protocol closes the race with a concurrent guest write).
  // An error means the ring is broken: the channel is then dead.
  absl::Status Drain(Vsp& vsp);
  absl::StatusOr<bool> Drain(Vsp& vsp, uint32_t budget) override;
  GuestPages& memory() override { return memory_; }
  absl::StatusOr<MappedGpadl> MapGpadl(uint32_t handle) override;

  void set_target_vp(uint32_t vp) { target_vp_.store(vp); }
  uint32_t target_vp() const { return target_vp_.load(); }

  // The host side of both rings, for a save (issue 14): taken under both
  // locks, so no drain or send is half done.
  struct RingIndices {
    uint32_t in_read = 0;
    uint32_t in_published = 0;
    uint32_t out_write = 0;
    bool out_pending_set = false;
    bool broken = false;
  };
  RingIndices SaveIndices();
  // A restored channel that was broken when saved stays broken.
  void MarkBroken() { broken_.store(true); }
  // Stops sends and drains; waits for one in progress to finish.
  void Close();
  bool broken() const { return broken_.load(); }

 private:
  void SignalGuest();

  const uint32_t relid_;
  std::atomic<uint32_t> target_vp_;
  const ChannelSignal signal_;
  GuestPages& memory_;
  const GpadlMapper map_gpadl_;
  std::atomic<bool> closed_{false};
  std::atomic<bool> broken_{false};

  absl::Mutex in_mu_;
  RingReader in_ ABSL_GUARDED_BY(in_mu_);
  Packet packet_ ABSL_GUARDED_BY(in_mu_);  // reused: no allocation per packet
  absl::Mutex out_mu_ ABSL_ACQUIRED_AFTER(in_mu_);
  RingWriter out_ ABSL_GUARDED_BY(out_mu_);
};

}  // namespace vmbus

#endif  // HVSTACK_VMWP_VMBUS_CHANNEL_H_
