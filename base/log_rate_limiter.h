#ifndef HVSTACK_BASE_LOG_RATE_LIMITER_H_
#define HVSTACK_BASE_LOG_RATE_LIMITER_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace base {

// Bounds what one source of repeated events can write to a log. A guest
// decides how often it probes an unbacked port or sends a malformed VMBus
// message; without a bound it can fill the worker's log (and vmms's copy of
// the worker's stderr) at will. The first `burst` events are logged one by
// one, so the log says exactly what happened first; after that at most one
// summary line per `interval` says how many more there were.
//
// Thread-safe; Note() takes no lock while within the burst.
class LogRateLimiter {
 public:
  static constexpr uint64_t kDefaultBurst = 16;

  // `what` names the events in the summaries, in the plural ("unhandled port
  // reads", "dropped VMBus channel messages").
  explicit LogRateLimiter(std::string what, uint64_t burst = kDefaultBurst,
                          absl::Duration interval = absl::Seconds(1));

  // Counts one event. Calls `log_one()` if the event is within the burst;
  // otherwise may log a summary, whose "latest" part is `latest()` (a
  // std::string, only computed when a summary is written).
  template <typename LogOne, typename Latest>
  void Note(LogOne&& log_one, Latest&& latest) {
    const uint64_t n = count_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (n <= burst_) {
      std::forward<LogOne>(log_one)();
      if (n == burst_) EndOfBurst(n);
      return;
    }
    if (SummaryDue()) Summarize(n, std::forward<Latest>(latest)());
  }
  template <typename LogOne>
  void Note(LogOne&& log_one) {
    Note(std::forward<LogOne>(log_one), [] { return std::string(); });
  }

  uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  void EndOfBurst(uint64_t n);
  bool SummaryDue();
  void Summarize(uint64_t n, const std::string& latest);

  const std::string what_;
  const uint64_t burst_;
  const absl::Duration interval_;
  std::atomic<uint64_t> count_{0};
  absl::Mutex mu_;
  absl::Time last_summary_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t count_at_last_summary_ ABSL_GUARDED_BY(mu_) = 0;
  bool burst_ended_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace base

#endif  // HVSTACK_BASE_LOG_RATE_LIMITER_H_
