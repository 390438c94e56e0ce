#include "vmwp/vsp/ic/ic_services.h"

#include "spdlog/spdlog.h"

namespace vsp::ic {

// ---------------------------------------------------------------- heartbeat

HeartbeatIc::HeartbeatIc(vmbus::Guid instance,
                         HeartbeatMonitor::Options options, Clock clock)
    : IcChannel("heartbeat", HeartbeatGuid(), instance, kIcHeartbeat,
                kHeartbeatVersions),
      clock_(std::move(clock)),
      monitor_(options) {}

absl::Status HeartbeatIc::Tick() {
  if (!negotiated()) return absl::OkStatus();
  std::optional<std::vector<uint8_t>> request;
  {
    absl::MutexLock lock(&mu_);
    request = monitor_.MaybeRequest(versions(), clock_());
  }
  if (!request.has_value()) return absl::OkStatus();
  return SendRequest(*request);
}

HeartbeatStatus HeartbeatIc::status() const {
  absl::MutexLock lock(&mu_);
  return monitor_.Status(clock_());
}

uint64_t HeartbeatIc::sequence() const {
  absl::MutexLock lock(&mu_);
  return monitor_.last_sequence();
}

absl::Time HeartbeatIc::last_answer() const {
  absl::MutexLock lock(&mu_);
  return monitor_.last_answer();
}

void HeartbeatIc::OnServiceResponse(std::span<const uint8_t> bytes) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = monitor_.OnResponse(bytes, clock_()); !s.ok()) {
    spdlog::warn("ic heartbeat: {}", s.ToString());
  }
}

void HeartbeatIc::OnChannelClosed() {
  absl::MutexLock lock(&mu_);
  monitor_.Reset();
}

// ----------------------------------------------------------------- shutdown

ShutdownIc::ShutdownIc(vmbus::Guid instance)
    : IcChannel("shutdown", ShutdownGuid(), instance, kIcShutdown,
                kShutdownVersions) {}

absl::Status ShutdownIc::Request(const ShutdownRequest& request) {
  {
    absl::MutexLock lock(&mu_);
    last_result_.reset();
  }
  return SendRequest(BuildShutdownRequest(request, versions()));
}

std::optional<absl::Status> ShutdownIc::last_result() const {
  absl::MutexLock lock(&mu_);
  return last_result_;
}

void ShutdownIc::OnServiceResponse(std::span<const uint8_t> bytes) {
  absl::MutexLock lock(&mu_);
  last_result_ = ParseShutdownResponse(bytes);
}

// ---------------------------------------------------------------- time sync

TimeSyncIc::TimeSyncIc(vmbus::Guid instance,
                       std::function<uint64_t()> reference_time, Clock clock)
    : IcChannel("timesync", TimeSyncGuid(), instance, kIcTimeSync,
                kTimeSyncVersions),
      reference_time_(std::move(reference_time)),
      clock_(std::move(clock)) {}

absl::Status TimeSyncIc::SendSample(uint8_t flags) {
  const absl::Time now = clock_();
  {
    absl::MutexLock lock(&sample_mu_);
    last_sample_ = now;
  }
  return SendRequest(
      BuildTimeSample(now, reference_time_(), flags, versions()));
}

absl::Status TimeSyncIc::Tick() {
  if (!negotiated()) return absl::OkStatus();
  {
    absl::MutexLock lock(&sample_mu_);
    if (clock_() - last_sample_ < kSamplePeriod) return absl::OkStatus();
  }
  return SendSample(kTimeSyncFlagSample);
}

uint64_t TimeSyncIc::answered() const { return answered_.load(); }

void TimeSyncIc::OnNegotiated(const IcVersions& versions) {
  if (absl::Status s = SendSample(kTimeSyncFlagSync); !s.ok()) {
    spdlog::warn("ic timesync: initial sync: {}", s.ToString());
  }
}

void TimeSyncIc::OnServiceResponse(std::span<const uint8_t> bytes) {
  if (ParseTimeSyncResponse(bytes).ok()) ++answered_;
}

// ---------------------------------------------------------------------- KVP

KvpIc::KvpIc(vmbus::Guid instance)
    : IcChannel("kvp", KvpGuid(), instance, kIcKvpExchange, kKvpVersions) {}

absl::Status KvpIc::Pump() {
  if (!negotiated()) return absl::OkStatus();
  absl::StatusOr<std::optional<std::vector<uint8_t>>> next =
      exchange_.NextMessage(versions());
  if (!next.ok()) return next.status();
  if (!next->has_value()) return absl::OkStatus();
  absl::Status s = SendRequest(**next);
  if (!s.ok()) exchange_.Reset();  // the request never left
  return s;
}

absl::Status KvpIc::Enqueue(KvpRequest request) {
  // Refuse what cannot be encoded now rather than at send time.
  if (absl::StatusOr<std::vector<uint8_t>> b = BuildKvpRequest(request, {});
      !b.ok()) {
    return b.status();
  }
  absl::MutexLock lock(&mu_);
  exchange_.Enqueue(std::move(request));
  return Pump();
}

absl::Status KvpIc::ScanPool(KvpPool pool) {
  absl::MutexLock lock(&mu_);
  exchange_.ScanPool(pool);
  return Pump();
}

std::map<std::string, std::string> KvpIc::pool(KvpPool pool) const {
  absl::MutexLock lock(&mu_);
  return exchange_.pool(pool);
}

bool KvpIc::busy() const {
  absl::MutexLock lock(&mu_);
  return exchange_.busy();
}

bool KvpIc::idle() const {
  absl::MutexLock lock(&mu_);
  return exchange_.idle();
}

void KvpIc::OnNegotiated(const IcVersions& versions) {
  absl::MutexLock lock(&mu_);
  exchange_.ScanPool(KvpPool::kAuto);
  if (absl::Status s = Pump(); !s.ok()) {
    spdlog::warn("ic kvp: {}", s.ToString());
  }
}

void KvpIc::OnServiceResponse(std::span<const uint8_t> bytes) {
  absl::MutexLock lock(&mu_);
  if (absl::StatusOr<KvpResult> r = exchange_.OnResponse(bytes); !r.ok()) {
    spdlog::warn("ic kvp: {}", r.status().ToString());
  }
  if (absl::Status s = Pump(); !s.ok()) {
    spdlog::warn("ic kvp: {}", s.ToString());
  }
}

void KvpIc::OnChannelClosed() {
  absl::MutexLock lock(&mu_);
  exchange_.Reset();
  exchange_.DropQueued();
}

}  // namespace vsp::ic
