#ifndef HVSTACK_VMWP_SERVICE_WORKER_EVENTS_H_
#define HVSTACK_VMWP_SERVICE_WORKER_EVENTS_H_

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/hvstack/internal/worker.pb.h"

namespace vmwp {

// The worker's events (worker.proto's WorkerEvent) for WatchEvents streams:
// numbered 1, 2, 3, ..., the most recent kRetained kept for subscribers that
// come late or reconnect. Thread-safe; Close() (the worker is ending) wakes
// every waiter.
class WorkerEventLog {
 public:
  static constexpr size_t kRetained = 256;

  // Stamps `event` with the next sequence number and the time, and keeps it.
  // Returns the sequence number. Ignored (returns 0) after Close().
  uint64_t Publish(hvstack::internal::WorkerEvent event);
  void Close();

  struct Batch {
    std::vector<hvstack::internal::WorkerEvent> events;
    // No event will ever follow the ones returned.
    bool closed = false;
  };
  // Retained events with sequence > `after`; waits for one until `deadline`
  // if there are none yet. Empty and not closed: the deadline passed.
  Batch WaitAfter(uint64_t after, absl::Time deadline) const;

  uint64_t last_sequence() const;

 private:
  mutable absl::Mutex mu_;
  std::deque<hvstack::internal::WorkerEvent> events_ ABSL_GUARDED_BY(mu_);
  uint64_t last_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace vmwp

#endif  // HVSTACK_VMWP_SERVICE_WORKER_EVENTS_H_
