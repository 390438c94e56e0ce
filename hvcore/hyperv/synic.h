#ifndef HVSTACK_HVCORE_HYPERV_SYNIC_H_
#define HVSTACK_HVCORE_HYPERV_SYNIC_H_

// One VP's synthetic interrupt controller: its MSRs (SCONTROL, SVERSION,
// SIEFP, SIMP, EOM, SINT0-15), the message page with one 256-byte slot per
// SINT, the event flags page with 2048 flags per SINT, and interrupt
// delivery through the SintInjector seam.
//
// Message slots follow the TLFS protocol. A slot is free when its
// message_type is 0. If it is busy, the message waits in a per-SINT FIFO and
// the busy slot gets its "message pending" flag; the guest, after freeing the
// slot, sees the flag and writes EOM, and EOM moves the next queued message in
// (setting the pending flag on it again if more are waiting). The guest and
// the VMM race on the slot header, so it is claimed and flagged with atomic
// operations on its first 8 bytes.
//
// Thread-safe: MSR accesses come from the VP's own thread, posts and signals
// from any thread. Injections happen after the lock is released.

#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "hvcore/hyperv/guest_ram.h"
#include "hvcore/hyperv/msr_result.h"
#include "hvcore/hyperv/seams.h"
#include "hvcore/hyperv/tlfs.h"

namespace hvstack::saved {
class SynicState;
}  // namespace hvstack::saved

namespace hvcore::hyperv {

class Synic {
 public:
  // Messages waiting for a busy slot, per SINT. A guest that never frees its
  // slot cannot make the VMM queue without bound.
  static constexpr size_t kDefaultMaxQueuedPerSint = 64;

  Synic(uint32_t vp_index, GuestRam& ram, SintInjector& injector,
        size_t max_queued_per_sint = kDefaultMaxQueuedPerSint);
  Synic(const Synic&) = delete;
  Synic& operator=(const Synic&) = delete;

  static bool IsSynicMsr(uint32_t msr);
  // Only for IsSynicMsr(msr).
  MsrResult ReadMsr(uint32_t msr);
  MsrResult WriteMsr(uint32_t msr, uint64_t value);

  // Host -> guest message on `sint`. OK when the message is in the slot or
  // queued behind a busy one; FailedPrecondition if the guest has not enabled
  // the SynIC and its message page (the message is dropped); InvalidArgument
  // for a bad sint or a payload over 240 bytes; ResourceExhausted when the
  // SINT's queue is full.
  absl::Status PostMessage(uint32_t sint, uint32_t message_type,
                           std::span<const uint8_t> payload);

  // Sets event flag `flag` (0-2047) of `sint` atomically and interrupts the
  // VP if the flag was clear. FailedPrecondition if the SynIC or the event
  // flags page is disabled.
  absl::Status SignalEvent(uint32_t sint, uint32_t flag);

  // Back to the reset state (TLFS: SCONTROL 0, pages disabled, SINTs masked,
  // message queues empty).
  void Reset();

  size_t QueuedMessages(uint32_t sint) const;

  // Save and restore (issue 14; hyperv_state.cc). Restore sets the registers
  // and queues without touching guest memory (the pages come back with it)
  // and checks what a guest write would (pages in RAM, valid vectors,
  // payload sizes, queue bounds): InvalidArgument naming the field.
  hvstack::saved::SynicState SaveState() const;
  absl::Status RestoreState(const hvstack::saved::SynicState& state);

 private:
  struct QueuedMessage {
    uint32_t type;
    uint8_t size;
    std::array<uint8_t, kMessagePayloadSize> payload;
  };
  struct Injection {
    uint8_t vector;
    bool auto_eoi;
  };
  enum class SlotOutcome { kDelivered, kBusy, kNoPage };

  SlotOutcome TryDeliverLocked(uint32_t sint, const QueuedMessage& message,
                               bool more_pending)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves queued messages into the slot while it is free (and the SynIC and
  // its message page are enabled).
  void FlushLocked(uint32_t sint, std::vector<Injection>& injections)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FlushAllLocked(std::vector<Injection>& injections)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends the SINT's interrupt if it may be raised now.
  void MaybeInterruptLocked(uint32_t sint, std::vector<Injection>& injections)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  MsrResult WritePageMsrLocked(uint64_t& reg, uint64_t value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ResetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Inject(const std::vector<Injection>& injections);

  const uint32_t vp_index_;
  GuestRam& ram_;
  SintInjector& injector_;
  const size_t max_queued_;

  mutable absl::Mutex mu_;
  uint64_t scontrol_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t simp_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t siefp_ ABSL_GUARDED_BY(mu_) = 0;
  std::array<uint64_t, kSintCount> sint_ ABSL_GUARDED_BY(mu_);
  std::array<std::deque<QueuedMessage>, kSintCount> queue_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hvcore::hyperv

#endif  // HVSTACK_HVCORE_HYPERV_SYNIC_H_
