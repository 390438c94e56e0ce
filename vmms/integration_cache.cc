#include "vmms/integration_cache.h"

#include <utility>

#include "absl/time/clock.h"

namespace vmms {
namespace {

// A snapshot nobody asked for in this long is dropped (its VM stopped or was
// deleted); the next read starts afresh.
constexpr absl::Duration kForgetAfter = absl::Minutes(1);

hvstack::v1::GuestIntegration FreshWorker() {
  hvstack::v1::GuestIntegration gi;
  gi.set_enlightened(true);
  gi.set_heartbeat(hvstack::v1::GuestIntegration::HEARTBEAT_NO_CONTACT);
  return gi;
}

}  // namespace

IntegrationCache::IntegrationCache(Query query, absl::Duration max_age,
                                   absl::Duration query_timeout)
    : query_(std::move(query)),
      max_age_(max_age),
      query_timeout_(query_timeout),
      refresher_([this] { RefreshLoop(); }) {}

IntegrationCache::~IntegrationCache() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  refresher_.join();
}

hvstack::v1::GuestIntegration IntegrationCache::Get(const std::string& uuid,
                                                    uint64_t generation,
                                                    const std::string& socket) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  Entry& entry = entries_[uuid];
  if (entry.generation != generation || entry.socket != socket) {
    entry = Entry{};
    entry.generation = generation;
    entry.socket = socket;
    entry.snapshot = FreshWorker();
  }
  entry.last_asked = now;
  if (!entry.queued && now - entry.read_at > max_age_) {
    entry.queued = true;
    queue_.push_back(uuid);
  }
  return entry.snapshot;
}

void IntegrationCache::RefreshLoop() {
  auto work = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return stopping_ || !queue_.empty();
  };
  absl::MutexLock lock(&mu_);
  while (true) {
    mu_.Await(absl::Condition(&work));
    if (stopping_) return;
    const std::string uuid = queue_.front();
    queue_.pop_front();
    auto it = entries_.find(uuid);
    if (it == entries_.end()) continue;
    const uint64_t generation = it->second.generation;
    const std::string socket = it->second.socket;
    mu_.Unlock();
    hvstack::v1::GuestIntegration fresh = query_(socket, query_timeout_);
    mu_.Lock();
    const absl::Time now = absl::Now();
    it = entries_.find(uuid);
    if (it == entries_.end() || it->second.generation != generation) continue;
    it->second.snapshot = std::move(fresh);
    it->second.read_at = now;
    it->second.queued = false;
    for (auto e = entries_.begin(); e != entries_.end();) {
      if (!e->second.queued && now - e->second.last_asked > kForgetAfter) {
        e = entries_.erase(e);
      } else {
        ++e;
      }
    }
  }
}

}  // namespace vmms
