#include "vmwp/vmbus_host.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "spdlog/spdlog.h"
#include "vmwp/vsp/ic/ic_messages.h"

namespace vmwp {
namespace {

using hvstack::internal::GuestIntegration;

constexpr absl::Duration kPollInterval = absl::Milliseconds(5);
constexpr uint32_t kMaxKvpPool = 4;

// Instance GUIDs of our IC channels: fixed, like the ones Hyper-V gives
// every VM ("hvst" "ac" "k" + the IC's number).
vmbus::Guid Instance(uint8_t n) {
  return vmbus::Guid::FromFields(0x68767374, 0x6163, 0x6b00 | n,
                                 {0x80, 0, 0, 0, 0, 0, 0, n});
}

GuestIntegration::Heartbeat ToProto(vsp::ic::HeartbeatStatus s) {
  switch (s) {
    case vsp::ic::HeartbeatStatus::kNoContact:
      return GuestIntegration::HEARTBEAT_NO_CONTACT;
    case vsp::ic::HeartbeatStatus::kOk:
      return GuestIntegration::HEARTBEAT_OK;
    case vsp::ic::HeartbeatStatus::kLost:
      return GuestIntegration::HEARTBEAT_LOST;
  }
  return GuestIntegration::HEARTBEAT_UNSPECIFIED;
}

}  // namespace

VmbusHost::VmbusHost(vid::Partition& partition, Options options)
    : partition_(partition),
      hv_(*partition.hyperv()),
      options_(std::move(options)),
      pages_(partition.memory()),
      synic_port_(hv_),
      heartbeat_(Instance(1), {.interval = options_.heartbeat_interval,
                               .lost_after = options_.heartbeat_lost_after}),
      shutdown_(Instance(2)),
      timesync_(Instance(3),
                [&partition] { return partition.ReferenceTime(); }),
      kvp_(Instance(4)),
      server_(pages_, synic_port_,
              {.vp_count = partition.vp_count(),
               // Every channel's event port exists before its offer goes out
               // (sub-channels are offered while the guest runs).
               .on_channel_added = [this](uint32_t relid) {
                 absl::Status s = vmbus::RegisterChannelEventPort(
                     hv_.connections(), server_, relid);
                 return absl::IsAlreadyExists(s) ? absl::OkStatus() : s;
               }}) {}

absl::StatusOr<std::unique_ptr<VmbusHost>> VmbusHost::Create(
    vid::Partition& partition, Options options) {
  if (partition.hyperv() == nullptr) {
    return absl::FailedPreconditionError(
        "VMBus needs an enlightened partition (the Hyper-V SynIC)");
  }
  std::unique_ptr<VmbusHost> host(new VmbusHost(partition, std::move(options)));
  if (absl::Status s = host->Start(); !s.ok()) return s;
  return host;
}

absl::Status VmbusHost::Start() {
  if (absl::Status s =
          vmbus::RegisterVmbusMessagePorts(hv_.connections(), server_);
      !s.ok()) {
    return s;
  }
  size_t ic = 0;
  for (vmbus::Vsp* vsp : std::initializer_list<vmbus::Vsp*>{
           &heartbeat_, &shutdown_, &timesync_, &kvp_}) {
    absl::StatusOr<uint32_t> relid = server_.AddVsp(vsp);
    if (!relid.ok()) return relid.status();
    ic_relids_[ic++] = *relid;
  }
  absl::StatusOr<StorageControllers> storage = BuildStorageControllers(
      options_.disks, pages_, partition_.vp_count(),
      [this](vmbus::Vsp* vsp) { return server_.AddVsp(vsp); });
  if (!storage.ok()) return storage.status();
  storage_ = *std::move(storage);
  for (size_t i = 0; i < storage_.controllers.size(); ++i) {
    absl::StatusOr<uint32_t> relid =
        server_.AddVsp(storage_.controllers[i]->primary());
    if (!relid.ok()) return relid.status();
    spdlog::info("storvsp: SCSI controller {} (relid {}) with {} disk(s)",
                 storage_.numbers[i], *relid,
                 std::count_if(options_.disks.begin(), options_.disks.end(),
                               [&](const auto& d) {
                                 return d.controller() == storage_.numbers[i];
                               }));
  }
  absl::StatusOr<std::vector<std::unique_ptr<vsp::net::NetAdapter>>> nics =
      BuildNetAdapters(options_.nics, options_.vm_uuid,
                       options_.on_thread_start);
  if (!nics.ok()) return nics.status();
  nics_ = *std::move(nics);
  for (auto& nic : nics_) {
    absl::StatusOr<uint32_t> relid = server_.AddVsp(nic.get());
    if (!relid.ok()) return relid.status();
    spdlog::info("netvsp: network adapter {} (relid {}, instance {})",
                 nic->name(), *relid,
                 nic->offer().interface_instance.ToString());
  }
  return absl::OkStatus();
}

std::vector<hvstack::internal::WorkerNicStatus> VmbusHost::NicStatus() const {
  std::vector<hvstack::internal::WorkerNicStatus> out;
  for (const auto& nic : nics_) out.push_back(vmwp::NicStatus(*nic));
  return out;
}

absl::Status VmbusHost::SetNicLink(uint32_t index, bool connected) {
  for (auto& nic : nics_) {
    if (nic->index() == index) {
      nic->SetLink(connected);
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError(
      absl::StrCat("the VM has no network adapter with index ", index,
                   " (it has ", nics_.size(), ")"));
}

void VmbusHost::StartTimer() {
  if (timer_.joinable() || closed_.HasBeenNotified()) return;
  timer_ = std::thread([this] { TimerLoop(); });
  for (auto& c : storage_.controllers) {
    if (absl::Status s = c->Start(options_.on_thread_start); !s.ok()) {
      spdlog::error("storvsp: cannot start the storage threads: {}",
                    s.ToString());
    }
  }
  for (auto& nic : nics_) nic->Start();
}

VmbusHost::~VmbusHost() { Close(); }

void VmbusHost::Close() {
  if (!closed_.HasBeenNotified()) closed_.Notify();
  if (timer_.joinable()) timer_.join();
  // In-flight disk I/O completes (into guest memory, which still exists).
  for (auto& c : storage_.controllers) c->Stop();
  // The adapters' threads stop touching the channels before the server goes.
  for (auto& nic : nics_) nic->Stop();
}

void VmbusHost::TimerLoop() {
  if (options_.on_thread_start) {
    if (absl::Status s = options_.on_thread_start(); !s.ok()) {
      spdlog::error("vmbus: heartbeat timer thread not started: {}",
                    s.ToString());
      return;
    }
  }
  // Tick often enough that a heartbeat goes out within a few ms of being due;
  // HeartbeatMonitor decides when one is.
  const absl::Duration tick =
      std::min(options_.heartbeat_interval / 4, absl::Milliseconds(250));
  uint32_t errors = 0;
  while (!closed_.WaitForNotificationWithTimeout(tick)) {
    bool quiet;
    {
      // Held while sending: OnPause / Quiesce return only once no tick is
      // writing to a ring.
      absl::MutexLock lock(&pause_mu_);
      if (paused_) continue;
      quiet = absl::Now() < quiet_until_;
      if (absl::Status s = heartbeat_.Tick(); !s.ok() && errors++ < 8) {
        spdlog::warn("vmbus: heartbeat: {}", s.ToString());
      }
      if (absl::Status s = timesync_.Tick(); !s.ok() && errors++ < 8) {
        spdlog::warn("vmbus: time sample: {}", s.ToString());
      }
    }
    const vsp::ic::HeartbeatStatus now = heartbeat_.status();
    if (now == reported_ || now == vsp::ic::HeartbeatStatus::kNoContact ||
        (quiet && now == vsp::ic::HeartbeatStatus::kLost)) {
      continue;
    }
    reported_ = now;
    spdlog::info("vmbus: guest heartbeat {} (seq {})",
                 vsp::ic::HeartbeatStatusName(now), heartbeat_.sequence());
    if (options_.on_heartbeat_change)
      options_.on_heartbeat_change(ToProto(now), heartbeat_.sequence());
  }
}

bool VmbusHost::WaitFor(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + kGuestAnswerTimeout;
  while (!done()) {
    if (absl::Now() >= deadline) return false;
    if (closed_.WaitForNotificationWithTimeout(kPollInterval)) return done();
  }
  return true;
}

GuestIntegration VmbusHost::Status() const {
  GuestIntegration out;
  out.set_enlightened(true);
  out.set_vmbus_version(server_.version());
  out.set_heartbeat(ToProto(heartbeat_.status()));
  out.set_heartbeat_sequence(heartbeat_.sequence());
  if (const absl::Time t = heartbeat_.last_answer(); t != absl::InfinitePast())
    out.set_last_heartbeat_us(absl::ToUnixMicros(t));
  size_t index = 0;
  for (const vsp::ic::IcChannel* ic :
       std::initializer_list<const vsp::ic::IcChannel*>{&heartbeat_, &shutdown_,
                                                        &timesync_, &kvp_}) {
    hvstack::internal::IcChannelStatus* c = out.add_channels();
    c->set_name(ic->name());
    c->set_negotiated(ic->negotiated());
    c->set_open(ic->open());
    c->set_offered(server_.channel_offered(ic_relids_[index++]));
  }
  for (const auto& [k, v] : kvp_.pool(vsp::ic::KvpPool::kAuto))
    (*out.mutable_intrinsic())[k] = v;
  out.set_time_samples_answered(timesync_.answered());
  return out;
}

absl::Status VmbusHost::ShutdownGuest(bool reboot, const std::string& reason) {
  absl::MutexLock lock(&call_mu_);
  if (!shutdown_.negotiated()) {
    return absl::FailedPreconditionError(
        "guest offers no shutdown channel (it has not opened the shutdown "
        "integration component); stop the VM instead");
  }
  vsp::ic::ShutdownRequest request;
  request.kind = reboot ? vsp::ic::ShutdownKind::kRestart
                        : vsp::ic::ShutdownKind::kShutdown;
  request.message = reason;
  if (absl::Status s = shutdown_.Request(request); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("cannot send the shutdown "
                                               "request to the guest: ",
                                               s.message()));
  }
  if (!WaitFor([this] { return shutdown_.last_result().has_value(); })) {
    return closed_.HasBeenNotified()
               ? absl::UnavailableError(
                     "the VM stopped before the guest "
                     "answered the shutdown request")
               : absl::DeadlineExceededError(absl::StrCat(
                     "the guest did not answer the shutdown request within ",
                     absl::FormatDuration(kGuestAnswerTimeout),
                     "; stop the VM instead"));
  }
  absl::Status result = *shutdown_.last_result();
  if (!result.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the guest refused to shut down: ", result.message()));
  }
  return absl::OkStatus();
}

std::string KvpUnavailable(bool channel_open) {
  if (channel_open) {
    return "the guest opened its KVP channel but its key-value exchange "
           "service is not answering (on Linux: hv_kvp_daemon is not "
           "running)";
  }
  return "the guest has no KVP channel open (no key-value exchange service "
         "running in the guest)";
}

absl::Status VmbusHost::CheckKvp(uint32_t pool) const {
  if (pool > kMaxKvpPool) {
    return absl::InvalidArgumentError(
        absl::StrCat("KVP pool ", pool, " does not exist (0-4)"));
  }
  if (!kvp_.negotiated())
    return absl::FailedPreconditionError(KvpUnavailable(kvp_.open()));
  return absl::OkStatus();
}

// The host reads one item by listing its pool, as Hyper-V's own host does,
// not with a KVP GET: Linux's hv_kvp cannot answer a GET with the value. It
// forwards the GET to hv_kvp_daemon with value_size 0, so the daemon copies
// nothing, and it takes the reply from the ENUMERATE layout (4 bytes further
// on): every GET of an item Linux holds comes back "" (6.1's
// drivers/hv/hv_kvp.c kvp_send_key / kvp_respond_to_host).
absl::StatusOr<std::string> VmbusHost::GetKvp(uint32_t pool,
                                              const std::string& key) {
  absl::StatusOr<std::map<std::string, std::string>> items = ListKvp(pool);
  if (!items.ok()) return items.status();
  auto it = items->find(key);
  if (it == items->end()) {
    return absl::NotFoundError(
        absl::StrCat("the guest has no key \"", key, "\" in KVP pool ", pool));
  }
  return it->second;
}

absl::Status VmbusHost::SetKvp(uint32_t pool, const std::string& key,
                               const std::string& value) {
  absl::MutexLock lock(&call_mu_);
  if (absl::Status s = CheckKvp(pool); !s.ok()) return s;
  vsp::ic::KvpRequest request{.op = vsp::ic::KvpOperation::kSet,
                              .pool = static_cast<vsp::ic::KvpPool>(pool),
                              .key = key,
                              .value = value};
  if (absl::Status s = kvp_.Enqueue(std::move(request)); !s.ok()) return s;
  if (!WaitFor([this] { return kvp_.idle(); })) {
    return absl::DeadlineExceededError(
        absl::StrCat("the guest did not answer the KVP set of \"", key, "\""));
  }
  std::map<std::string, std::string> items =
      kvp_.pool(static_cast<vsp::ic::KvpPool>(pool));
  auto it = items.find(key);
  if (it == items.end() || it->second != value) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the guest refused to set \"", key, "\" in KVP pool ", pool));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, std::string>> VmbusHost::ListKvp(
    uint32_t pool) {
  absl::MutexLock lock(&call_mu_);
  if (absl::Status s = CheckKvp(pool); !s.ok()) return s;
  const auto p = static_cast<vsp::ic::KvpPool>(pool);
  if (absl::Status s = kvp_.ScanPool(p); !s.ok()) return s;
  if (!WaitFor([this] { return kvp_.idle(); })) {
    return absl::DeadlineExceededError(
        absl::StrCat("the guest did not finish listing KVP pool ", pool));
  }
  return kvp_.pool(p);
}

void VmbusHost::OnPause() {
  absl::MutexLock lock(&pause_mu_);
  paused_ = true;
}

void VmbusHost::OnResume() {
  {
    absl::MutexLock lock(&pause_mu_);
    paused_ = false;
    quiet_until_ = absl::Now() + options_.heartbeat_lost_after;
  }
  if (!timesync_.negotiated()) return;
  if (absl::Status s = timesync_.SendSample(vsp::ic::kTimeSyncFlagSync);
      !s.ok()) {
    spdlog::warn("vmbus: time sync after resume: {}", s.ToString());
  }
}

// ------------------------------------------------------ save and restore

absl::Status VmbusHost::Quiesce(absl::Time deadline) {
  OnPause();  // waits for a timer tick in progress
  if (absl::Status s = server_.QuiesceVsps(deadline); !s.ok()) {
    OnResumeQuietly();
    return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<hvstack::saved::VmbusServerState> VmbusHost::SaveState() {
  return server_.SaveState();
}

void VmbusHost::Unquiesce() {
  server_.UnquiesceVsps();
  OnResume();
}

void VmbusHost::OnResumeQuietly() {
  absl::MutexLock lock(&pause_mu_);
  paused_ = false;
  quiet_until_ = absl::Now() + options_.heartbeat_lost_after;
}

absl::Status VmbusHost::RestoreState(
    const hvstack::saved::VmbusServerState& state) {
  if (absl::Status s = server_.RestoreState(state); !s.ok()) return s;
  // The guest's clock stood still while the VM was saved: a SYNC sample
  // waits in its ring for its first instruction, and the heartbeat is not
  // judged until it had a chance to answer.
  OnResume();
  return absl::OkStatus();
}

// ------------------------------------------------------ IntegrationControl

void IntegrationControl::Attach(VmbusHost* host) {
  absl::MutexLock lock(&mu_);
  host_ = host;
}

void IntegrationControl::Detach() {
  absl::MutexLock lock(&mu_);
  if (host_ == nullptr) return;
  host_->Close();
  host_ = nullptr;
  mu_.Await(absl::Condition(
      +[](int* n) { return *n == 0; }, &in_flight_));
}

absl::Status IntegrationControl::With(
    const std::function<absl::Status(VmbusHost&)>& fn) {
  VmbusHost* host;
  {
    absl::MutexLock lock(&mu_);
    if (host_ == nullptr) {
      return absl::FailedPreconditionError(
          "the VM has no VMBus (it is not enlightened, or it is between two "
          "boots)");
    }
    host = host_;
    ++in_flight_;
  }
  absl::Status s = fn(*host);
  absl::MutexLock lock(&mu_);
  --in_flight_;
  return s;
}

hvstack::internal::GuestIntegration IntegrationControl::Status() {
  hvstack::internal::GuestIntegration out;
  (void)With([&out](VmbusHost& host) {
    out = host.Status();
    return absl::OkStatus();
  });
  return out;
}

void IntegrationControl::OnPause() {
  (void)With([](VmbusHost& host) {
    host.OnPause();
    return absl::OkStatus();
  });
}

void IntegrationControl::OnResume() {
  (void)With([](VmbusHost& host) {
    host.OnResume();
    return absl::OkStatus();
  });
}

}  // namespace vmwp
