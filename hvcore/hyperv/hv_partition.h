#ifndef HVSTACK_HVCORE_HYPERV_HV_PARTITION_H_
#define HVSTACK_HVCORE_HYPERV_HV_PARTITION_H_

// The Hyper-V synthetic interface of one partition: the front door the VP
// run loop calls on MSR exits and hypercall traps, and the host-side calls
// (post a message to a VP's SINT, signal an event flag) that VMBus uses.
//
// Partition-wide MSRs: GUEST_OS_ID, HYPERCALL, TIME_REF_COUNT, REFERENCE_TSC,
// TSC_FREQUENCY, APIC_FREQUENCY. Per VP: VP_INDEX, VP_ASSIST_PAGE (accepted
// and stored, because Linux writes it even when not advertised; nothing uses
// it) and the SynIC MSRs (synic.h). Every other MSR in kMsrRangeBase..+Count
// is a #GP.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "hvcore/hyperv/connections.h"
#include "hvcore/hyperv/guest_ram.h"
#include "hvcore/hyperv/hv_stats.h"
#include "hvcore/hyperv/hypercall_dispatcher.h"
#include "hvcore/hyperv/hypercall_page.h"
#include "hvcore/hyperv/msr_result.h"
#include "hvcore/hyperv/reference_time.h"
#include "hvcore/hyperv/seams.h"
#include "hvcore/hyperv/synic.h"
#include "hvcore/hyperv/tlfs.h"

namespace hvstack::saved {
class HvPartitionState;
}  // namespace hvstack::saved

namespace hvcore::hyperv {

struct HvPartitionConfig {
  uint32_t vp_count = 1;
  uint64_t tsc_hz = 0;        // the guest TSC frequency; must be > 10 MHz
  uint64_t tsc_at_start = 0;  // guest TSC at reference time 0
  // KVM's in-kernel LAPIC timer counts at 1 GHz.
  uint64_t apic_hz = 1'000'000'000;
  uint16_t hypercall_port = kDefaultHypercallPort;
  size_t max_queued_messages_per_sint = Synic::kDefaultMaxQueuedPerSint;
};

// The calling VP's mode at the trap (KVM_GET_SREGS).
struct HypercallCaller {
  uint8_t cpl = 0;         // CS selector & 3
  bool long_mode = false;  // EFER.LMA && CS.L
};

// The answer to a hypercall trap.
struct HypercallOutcome {
  // #UD instead of a result: the caller was not at CPL 0 in 64-bit mode, or
  // the guest has not enabled the hypercall page.
  bool inject_ud = false;
  uint64_t result = 0;  // RAX, see HypercallResult()
};

class HvPartition {
 public:
  // The references must outlive the partition. `crash_handler` may be null
  // (crash reports are then only kept for last_guest_crash()).
  static absl::StatusOr<std::unique_ptr<HvPartition>> Create(
      const HvPartitionConfig& config, GuestRam& ram, GuestTscSource& tsc,
      SintInjector& injector, GuestCrashHandler* crash_handler = nullptr);

  HvPartition(const HvPartition&) = delete;
  HvPartition& operator=(const HvPartition&) = delete;

  // True for every MSR the VMM must send here (the MSR filter range).
  static bool HandlesMsr(uint32_t msr) {
    return msr >= kMsrRangeBase && msr - kMsrRangeBase < kMsrRangeCount;
  }
  // An MSR exit on VP `vp_index`. A vp_index out of range is a VMM bug and
  // answers #GP.
  MsrResult ReadMsr(uint32_t vp_index, uint32_t msr);
  MsrResult WriteMsr(uint32_t vp_index, uint32_t msr, uint64_t value);

  // A trap on hypercall_port() (see hypercall_page.h for the registers).
  HypercallOutcome Hypercall(uint32_t vp_index, const HypercallArgs& args,
                             const HypercallCaller& caller);

  // Host -> guest, see Synic. NotFound for a VP index out of range.
  absl::Status PostMessage(uint32_t vp_index, uint32_t sint,
                           uint32_t message_type,
                           std::span<const uint8_t> payload);
  absl::Status SignalEvent(uint32_t vp_index, uint32_t sint, uint32_t flag);

  // Guest -> host ports for HvPostMessage / HvSignalEvent.
  ConnectionTable& connections() { return connections_; }

  // VM reset: every synthetic register back to its reset value; pages the
  // guest had set up are forgotten (RAM is the loader's business).
  void Reset();

  // ---- Save and restore (issue 14; hyperv_state.cc, saved_state.proto).
  // The partition-wide MSRs, the reference time now (at guest TSC
  // `guest_tsc`), every SynIC and its queued messages. Call with the VPs
  // held.
  hvstack::saved::HvPartitionState SaveState(uint64_t guest_tsc);
  // Puts `state` back into this freshly created partition (same VP count and
  // TSC frequency, else FailedPrecondition naming it) before its VPs run,
  // with guest memory already restored. The reference clock continues from
  // the saved reference time at guest TSC `guest_tsc` (the guest TSC now: on
  // a host that restores the guest TSC this keeps the saved clock, on one
  // that cannot it absorbs the jump); an enabled reference TSC page gets the
  // new offset and sequence. Values are checked as the guest's own MSR
  // writes are (pages in RAM, SINT vectors); InvalidArgument names the field.
  absl::Status RestoreState(const hvstack::saved::HvPartitionState& state,
                            uint64_t guest_tsc);
  static constexpr uint32_t kStateVersion = 1;

  // What the guest used and what we refused (for logs).
  HvStatsSnapshot stats() const { return stats_.Snapshot(); }
  // The guest's most recent crash report, if it made one.
  std::optional<GuestCrashReport> last_guest_crash();

  uint32_t vp_count() const { return static_cast<uint32_t>(synics_.size()); }
  uint16_t hypercall_port() const { return config_.hypercall_port; }
  const ReferenceClock& clock() const { return clock_; }
  Synic& synic(uint32_t vp_index) { return *synics_[vp_index]; }

 private:
  HvPartition(const HvPartitionConfig& config, const ReferenceClock& clock,
              GuestRam& ram, GuestTscSource& tsc, SintInjector& injector,
              GuestCrashHandler* crash_handler);
  // CRASH_CTL write with NOTIFY: builds the report (reading the message, if
  // any, from guest RAM).
  GuestCrashReport MakeCrashReportLocked(uint32_t vp_index, uint64_t ctl)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  MsrResult DoReadMsr(uint32_t vp_index, uint32_t msr);
  MsrResult DoWriteMsr(uint32_t vp_index, uint32_t msr, uint64_t value);
  HypercallOutcome DoHypercall(uint32_t vp_index, const HypercallArgs& args,
                               const HypercallCaller& caller);
  MsrResult WriteHypercallLocked(uint64_t value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Puts back the RAM the hypercall page covered (Hyper-V's page is an
  // overlay; ours is written into RAM, so disabling restores the bytes).
  void RemoveHypercallPageLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  MsrResult WriteReferenceTscLocked(uint64_t value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const HvPartitionConfig config_;
  // Replaced only by RestoreState, before the VPs and VMBus run.
  ReferenceClock clock_;
  GuestRam& ram_;
  GuestTscSource& tsc_;
  GuestCrashHandler* const crash_handler_;
  ConnectionTable connections_;
  HypercallDispatcher dispatcher_;
  HvStats stats_;
  std::vector<std::unique_ptr<Synic>> synics_;  // one per VP, fixed

  absl::Mutex mu_;
  uint64_t guest_os_id_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t hypercall_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t reference_tsc_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t tsc_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<uint64_t> assist_pages_ ABSL_GUARDED_BY(mu_);  // per VP
  std::array<uint64_t, 5> crash_params_ ABSL_GUARDED_BY(mu_) = {};
  std::optional<GuestCrashReport> last_crash_ ABSL_GUARDED_BY(mu_);
  // The RAM under the enabled hypercall page.
  std::optional<std::array<uint8_t, kPageSize>> saved_page_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace hvcore::hyperv

#endif  // HVSTACK_HVCORE_HYPERV_HV_PARTITION_H_
