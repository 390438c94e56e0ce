#include "vmwp/service/worker_events.h"

#include <utility>

#include "absl/time/clock.h"

namespace vmwp {

uint64_t WorkerEventLog::Publish(hvstack::internal::WorkerEvent event) {
  absl::MutexLock lock(&mu_);
  if (closed_) return 0;
  event.set_sequence(++last_);
  event.set_time_us(absl::ToUnixMicros(absl::Now()));
  events_.push_back(std::move(event));
  while (events_.size() > kRetained) events_.pop_front();
  return last_;
}

void WorkerEventLog::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

uint64_t WorkerEventLog::last_sequence() const {
  absl::MutexLock lock(&mu_);
  return last_;
}

WorkerEventLog::Batch WorkerEventLog::WaitAfter(uint64_t after,
                                                absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto ready = [this, after]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return closed_ || last_ > after;
  };
  mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  Batch batch;
  for (const auto& event : events_) {
    if (event.sequence() > after) batch.events.push_back(event);
  }
  batch.closed = closed_;
  return batch;
}

}  // namespace vmwp
