// Integration component save and restore (issue 14).

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "vmwp/vsp/ic/ic_channel.h"
#include "vmwp/vsp/ic/ic_services.h"
#include "vmwp/vsp/ic/saved_state.pb.h"

namespace vsp::ic {
namespace {

constexpr uint32_t kIcStateVersion = 1;
constexpr size_t kMaxSavedKvpRequests = 1024;

absl::Status Bad(const std::string& name, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("saved ", name, " IC state: ", what));
}

bool Offered(std::span<const IcVersion> list, IcVersion v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}

hvstack::saved::KvpRequestState ToState(const KvpRequest& r) {
  hvstack::saved::KvpRequestState s;
  s.set_op(static_cast<uint32_t>(r.op));
  s.set_pool(static_cast<uint32_t>(r.pool));
  s.set_key(r.key);
  s.set_value(r.value);
  s.set_index(r.index);
  return s;
}

absl::StatusOr<KvpRequest> FromState(const hvstack::saved::KvpRequestState& s) {
  if (s.op() > static_cast<uint32_t>(KvpOperation::kSetIpInfo) ||
      s.pool() > static_cast<uint32_t>(KvpPool::kAutoInternal) ||
      s.index() > KvpExchange::kMaxEnumerateIndex) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KVP request op %d pool %d index %d", s.op(), s.pool(), s.index()));
  }
  KvpRequest r{.op = static_cast<KvpOperation>(s.op()),
               .pool = static_cast<KvpPool>(s.pool()),
               .key = s.key(),
               .value = s.value(),
               .index = s.index()};
  // What could not be encoded could not have been queued.
  if (absl::StatusOr<std::vector<uint8_t>> b = BuildKvpRequest(r, {}); !b.ok())
    return b.status();
  return r;
}

}  // namespace

absl::StatusOr<std::string> IcChannel::SaveState() {
  hvstack::saved::IcState state;
  state.set_version(kIcStateVersion);
  state.set_name(name_);
  {
    absl::MutexLock lock(&mu_);
    state.set_negotiated(negotiated_);
    state.set_framework_major(versions_.framework.major);
    state.set_framework_minor(versions_.framework.minor);
    state.set_message_major(versions_.message.major);
    state.set_message_minor(versions_.message.minor);
  }
  state.set_next_transaction(next_transaction_.load());
  SaveService(state);
  return state.SerializeAsString();
}

absl::Status IcChannel::RestoreState(
    std::shared_ptr<vmbus::ChannelEndpoint> endpoint, std::string_view bytes) {
  hvstack::saved::IcState state;
  if (!state.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Bad(name_, "not a serialized IcState");
  }
  if (state.version() == 0 || state.version() > kIcStateVersion) {
    return absl::FailedPreconditionError(
        absl::StrFormat("saved %s IC state format version %d; this worker "
                        "reads 1 to %d",
                        name_, state.version(), kIcStateVersion));
  }
  if (state.name() != name_) {
    return Bad(name_, absl::StrCat("it belongs to the ", state.name(), " IC"));
  }
  const IcVersions versions{
      .framework = {static_cast<uint16_t>(state.framework_major()),
                    static_cast<uint16_t>(state.framework_minor())},
      .message = {static_cast<uint16_t>(state.message_major()),
                  static_cast<uint16_t>(state.message_minor())}};
  if (state.negotiated() &&
      (state.framework_major() > 0xFFFF || state.framework_minor() > 0xFFFF ||
       state.message_major() > 0xFFFF || state.message_minor() > 0xFFFF ||
       !Offered(kFrameworkVersions, versions.framework) ||
       !Offered(service_versions_, versions.message))) {
    return Bad(name_,
               absl::StrFormat("versions %d.%d / %d.%d were never "
                               "offered",
                               state.framework_major(), state.framework_minor(),
                               state.message_major(), state.message_minor()));
  }
  if (state.negotiated() && endpoint == nullptr) {
    return Bad(name_, "negotiated on a channel that is not open");
  }
  if (absl::Status s = RestoreService(state); !s.ok()) {
    return Bad(name_, s.message());
  }
  next_transaction_.store(state.next_transaction());
  absl::MutexLock lock(&mu_);
  endpoint_ = std::move(endpoint);
  negotiated_ = state.negotiated();
  versions_ = state.negotiated() ? versions : IcVersions{};
  return absl::OkStatus();
}

// ---------------------------------------------------------------- heartbeat

void HeartbeatIc::SaveService(hvstack::saved::IcState& state) const {
  absl::MutexLock lock(&mu_);
  const HeartbeatMonitor::Saved s = monitor_.Save(clock_());
  state.set_heartbeat_next_sequence(s.next_sequence);
  state.set_heartbeat_outstanding(s.outstanding.has_value());
  state.set_heartbeat_outstanding_sequence(s.outstanding.value_or(0));
  state.set_heartbeat_sent_age_us(
      s.sent_age.has_value() ? absl::ToInt64Microseconds(*s.sent_age) : -1);
  state.set_heartbeat_answer_age_us(
      s.answer_age.has_value() ? absl::ToInt64Microseconds(*s.answer_age) : -1);
  state.set_heartbeat_last_sequence(s.last_sequence);
}

absl::Status HeartbeatIc::RestoreService(const hvstack::saved::IcState& state) {
  // Ages beyond a year, or negative ones other than "never", are not ours.
  constexpr int64_t kMaxAgeUs = int64_t{366} * 24 * 3600 * 1000000;
  for (int64_t age :
       {state.heartbeat_sent_age_us(), state.heartbeat_answer_age_us()}) {
    if (age < -1 || age > kMaxAgeUs) {
      return absl::InvalidArgumentError(
          absl::StrFormat("heartbeat age %d us", age));
    }
  }
  HeartbeatMonitor::Saved s;
  s.next_sequence = state.heartbeat_next_sequence();
  if (state.heartbeat_outstanding())
    s.outstanding = state.heartbeat_outstanding_sequence();
  if (state.heartbeat_sent_age_us() >= 0)
    s.sent_age = absl::Microseconds(state.heartbeat_sent_age_us());
  if (state.heartbeat_answer_age_us() >= 0)
    s.answer_age = absl::Microseconds(state.heartbeat_answer_age_us());
  s.last_sequence = state.heartbeat_last_sequence();
  absl::MutexLock lock(&mu_);
  monitor_.Restore(s, clock_());
  return absl::OkStatus();
}

// ---------------------------------------------------------------- time sync

void TimeSyncIc::SaveService(hvstack::saved::IcState& state) const {
  state.set_timesync_answered(answered_.load());
}

absl::Status TimeSyncIc::RestoreService(const hvstack::saved::IcState& state) {
  answered_.store(state.timesync_answered());
  return absl::OkStatus();
}

// ---------------------------------------------------------------------- KVP

void KvpIc::SaveService(hvstack::saved::IcState& state) const {
  absl::MutexLock lock(&mu_);
  for (const KvpRequest& r : exchange_.queued())
    *state.add_kvp_queue() = ToState(r);
  if (exchange_.outstanding().has_value()) {
    state.set_kvp_has_outstanding(true);
    *state.mutable_kvp_outstanding() = ToState(*exchange_.outstanding());
  }
  for (int p = 0; p < 5; ++p) {
    const auto& items = exchange_.pool(static_cast<KvpPool>(p));
    state.add_kvp_pools()->mutable_items()->insert(items.begin(), items.end());
  }
}

absl::Status KvpIc::RestoreService(const hvstack::saved::IcState& state) {
  if (static_cast<size_t>(state.kvp_queue_size()) > kMaxSavedKvpRequests) {
    return absl::InvalidArgumentError(
        absl::StrCat(state.kvp_queue_size(), " queued KVP requests"));
  }
  std::deque<KvpRequest> queue;
  for (const hvstack::saved::KvpRequestState& r : state.kvp_queue()) {
    absl::StatusOr<KvpRequest> req = FromState(r);
    if (!req.ok()) return req.status();
    queue.push_back(*std::move(req));
  }
  std::optional<KvpRequest> outstanding;
  if (state.kvp_has_outstanding()) {
    absl::StatusOr<KvpRequest> req = FromState(state.kvp_outstanding());
    if (!req.ok()) return req.status();
    outstanding = *std::move(req);
  }
  if (state.kvp_pools_size() != 0 && state.kvp_pools_size() != 5) {
    return absl::InvalidArgumentError(
        absl::StrCat(state.kvp_pools_size(), " KVP pools (5 expected)"));
  }
  std::array<std::map<std::string, std::string>, 5> pools;
  for (int p = 0; p < state.kvp_pools_size(); ++p) {
    const auto& items = state.kvp_pools(p).items();
    if (items.size() > KvpExchange::kMaxEnumerateIndex) {
      return absl::InvalidArgumentError(
          absl::StrCat(items.size(), " items in KVP pool ", p));
    }
    pools[p].insert(items.begin(), items.end());
  }
  absl::MutexLock lock(&mu_);
  exchange_.Restore(std::move(queue), std::move(outstanding), std::move(pools));
  return absl::OkStatus();
}

}  // namespace vsp::ic
