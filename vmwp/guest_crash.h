#ifndef HVSTACK_VMWP_GUEST_CRASH_H_
#define HVSTACK_VMWP_GUEST_CRASH_H_

// The guest's own crash reports (Hyper-V crash MSRs, as Linux's hv_vmbus
// writes them on a panic): described for people, and acted upon per the VM's
// policy the moment the guest reports.

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/log_rate_limiter.h"
#include "hvcore/hyperv/seams.h"
#include "proto/hvstack/internal/worker.pb.h"

namespace vmwp {

// The message is the guest's (untrusted) text: kept as its last
// kMaxCrashMessageBytes, escaped for display (base/display_text.h).
inline constexpr size_t kMaxCrashMessageBytes = 4096;
inline constexpr size_t kMaxCrashSummaryBytes = 256;

// One line that says what happened: Linux's "Kernel panic - not syncing: ..."
// line when the message has one, else its first non-empty line (printk
// timestamps removed), else the parameters. Sanitized and bounded.
std::string SummarizeGuestCrash(absl::string_view message,
                                const std::array<uint64_t, 5>& params);

// The report as vmms and people see it (no action set).
hvstack::internal::GuestCrashReport DescribeGuestCrash(
    const hvcore::hyperv::GuestCrashReport& report, absl::Time when);

// Told by the partition (on the reporting VP's thread) when the guest writes
// CRASH_CTL with NOTIFY. Holds every VP at once, so that the guest can neither
// run on nor reboot before its crash is dealt with, tells vmms (a worker
// event), and carries out the action in force: end the worker (GUEST_CRASHED),
// ask for a fresh one (REBOOT_REQUESTED), or stay paused until Resume. One
// report per crash: until OnResume, further reports are only counted (a guest
// can write the MSRs in a loop), and what the guest makes us log is bounded.
class GuestCrashMonitor final : public hvcore::hyperv::GuestCrashHandler {
 public:
  // What the monitor does to the VM; set per boot, cleared when it ends.
  struct Actions {
    // Every VP held before its next instruction (must not wait: it runs on
    // a VP thread).
    std::function<void()> hold_vps;
    // The worker ends with GUEST_CRASHED / REBOOT_REQUESTED and `detail`.
    std::function<void(const std::string& detail)> end;
    std::function<void(const std::string& detail)> reboot;
    // The report, for vmms (WorkerEvent.guest_crashed).
    std::function<void(const hvstack::internal::GuestCrashReport&)> publish;
  };

  explicit GuestCrashMonitor(hvstack::internal::GuestCrashAction action =
                                 hvstack::internal::GUEST_CRASH_ACTION_END);

  // vmms's policy for the next report (any thread).
  void SetAction(hvstack::internal::GuestCrashAction action);
  hvstack::internal::GuestCrashAction action() const;
  void SetActions(Actions actions);

  void OnGuestCrash(const hvcore::hyperv::GuestCrashReport& report) override;
  // The VM was resumed: the next report is a new crash.
  void OnResume();

  // The most recent report handled (with the reports suppressed since).
  std::optional<hvstack::internal::GuestCrashReport> last() const;

 private:
  mutable absl::Mutex mu_;
  hvstack::internal::GuestCrashAction action_ ABSL_GUARDED_BY(mu_);
  Actions actions_ ABSL_GUARDED_BY(mu_);
  // A report is being handled: the VM is held (or ending) until OnResume.
  bool handling_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<hvstack::internal::GuestCrashReport> last_ ABSL_GUARDED_BY(mu_);
  base::LogRateLimiter reports_log_{"guest crash reports"};
};

}  // namespace vmwp

#endif  // HVSTACK_VMWP_GUEST_CRASH_H_
