#ifndef HVSTACK_VMWP_VSP_IC_IC_SERVICES_H_
#define HVSTACK_VMWP_VSP_IC_IC_SERVICES_H_

// The four integration components on their channels. Each wraps the
// message logic of heartbeat.h / shutdown.h / timesync.h / kvp.h in an
// IcChannel; all are thread-safe (the worker's timer and management threads
// call in while VP threads deliver the guest's answers).

#include <functional>
#include <optional>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "vmwp/vsp/ic/heartbeat.h"
#include "vmwp/vsp/ic/ic_channel.h"
#include "vmwp/vsp/ic/kvp.h"
#include "vmwp/vsp/ic/shutdown.h"
#include "vmwp/vsp/ic/timesync.h"

namespace vsp::ic {

using Clock = std::function<absl::Time()>;

class HeartbeatIc final : public IcChannel {
 public:
  HeartbeatIc(vmbus::Guid instance, HeartbeatMonitor::Options options,
              Clock clock = absl::Now);
  // Sends the next heartbeat if one is due; call it periodically.
  absl::Status Tick();
  HeartbeatStatus status() const;
  uint64_t sequence() const;
  absl::Time last_answer() const;

 private:
  void OnServiceResponse(std::span<const uint8_t> bytes) override;
  void OnChannelClosed() override;
  void SaveService(hvstack::saved::IcState& state) const override;
  absl::Status RestoreService(const hvstack::saved::IcState& state) override;

  const Clock clock_;
  mutable absl::Mutex mu_;
  HeartbeatMonitor monitor_ ABSL_GUARDED_BY(mu_);
};

class ShutdownIc final : public IcChannel {
 public:
  explicit ShutdownIc(vmbus::Guid instance);
  // Asks the guest to shut down / restart / hibernate; the guest's answer
  // arrives later (last_result()). FailedPrecondition if the guest has not
  // negotiated the channel (the caller then falls back to ACPI or stop).
  absl::Status Request(const ShutdownRequest& request);
  // The guest's answer to the last request, once it came.
  std::optional<absl::Status> last_result() const;

 private:
  void OnServiceResponse(std::span<const uint8_t> bytes) override;

  mutable absl::Mutex mu_;
  std::optional<absl::Status> last_result_ ABSL_GUARDED_BY(mu_);
};

class TimeSyncIc final : public IcChannel {
 public:
  // `reference_time`: the partition's TIME_REF_COUNT now (100 ns), from
  // hvcore; used by service version 4.
  TimeSyncIc(vmbus::Guid instance, std::function<uint64_t()> reference_time,
             Clock clock = absl::Now);
  // Hyper-V (and OpenVMM) send a SAMPLE every 5 s. Linux's hv_utils keeps
  // the newest as the base of its Hyper-V PTP clock and reports it stale
  // (-ESTALE, "TIMESYNC IC: Stale time stamp") once it is 600 s old.
  static constexpr absl::Duration kSamplePeriod = absl::Seconds(5);

  // A sample now; kTimeSyncFlagSync makes the guest set its clock.
  absl::Status SendSample(uint8_t flags);
  // Sends a SAMPLE if kSamplePeriod has passed since the last sample of any
  // kind; call it periodically (the worker's timer thread does).
  absl::Status Tick();
  // Sample answers the guest sent back.
  uint64_t answered() const;

 private:
  // On negotiation (boot, resume): one SYNC sample, as Hyper-V does.
  void OnNegotiated(const IcVersions& versions) override;
  void OnServiceResponse(std::span<const uint8_t> bytes) override;
  void SaveService(hvstack::saved::IcState& state) const override;
  absl::Status RestoreService(const hvstack::saved::IcState& state) override;

  const std::function<uint64_t()> reference_time_;
  const Clock clock_;
  std::atomic<uint64_t> answered_{0};
  mutable absl::Mutex sample_mu_;
  absl::Time last_sample_ ABSL_GUARDED_BY(sample_mu_) = absl::InfinitePast();
};

class KvpIc final : public IcChannel {
 public:
  explicit KvpIc(vmbus::Guid instance);
  // Queues a host request (SET into a pool, GET, DELETE) or a pool scan;
  // sent one at a time once the guest negotiated.
  absl::Status Enqueue(KvpRequest request);
  absl::Status ScanPool(KvpPool pool);
  // What is known of a guest pool (from scans, GETs and acknowledged SETs).
  std::map<std::string, std::string> pool(KvpPool pool) const;
  bool busy() const;
  // Nothing queued or outstanding: every request and scan got its answer
  // (or was dropped with the channel).
  bool idle() const;

 private:
  // On negotiation: scan the guest's intrinsic items.
  void OnNegotiated(const IcVersions& versions) override;
  void OnServiceResponse(std::span<const uint8_t> bytes) override;
  void OnChannelClosed() override;
  void SaveService(hvstack::saved::IcState& state) const override;
  absl::Status RestoreService(const hvstack::saved::IcState& state) override;
  absl::Status Pump() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  KvpExchange exchange_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vsp::ic

#endif  // HVSTACK_VMWP_VSP_IC_IC_SERVICES_H_
