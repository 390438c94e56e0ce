#include "base/log_rate_limiter.h"

#include <spdlog/spdlog.h>

namespace base {

LogRateLimiter::LogRateLimiter(std::string what, uint64_t burst,
                               absl::Duration interval)
    : what_(std::move(what)),
      burst_(burst == 0 ? 1 : burst),
      interval_(interval) {}

void LogRateLimiter::EndOfBurst(uint64_t n) {
  spdlog::warn("further {} are summarized at most once every {}", what_,
               absl::FormatDuration(interval_));
  // The first summary comes an interval after the burst, not right after it.
  absl::MutexLock lock(&mu_);
  last_summary_ = absl::Now();
  count_at_last_summary_ = n;
  burst_ended_ = true;
}

bool LogRateLimiter::SummaryDue() {
  absl::MutexLock lock(&mu_);
  // Until the thread that logged the last event of the burst has recorded
  // the end of the burst, later events are part of the first summary.
  return burst_ended_ && absl::Now() - last_summary_ >= interval_;
}

void LogRateLimiter::Summarize(uint64_t n, const std::string& latest) {
  uint64_t more = 0;
  {
    absl::MutexLock lock(&mu_);
    // Another thread may have summarized since SummaryDue(); one line per
    // interval is the promise.
    const absl::Time now = absl::Now();
    if (!burst_ended_ || now - last_summary_ < interval_ ||
        n <= count_at_last_summary_) {
      return;
    }
    more = n - count_at_last_summary_;
    last_summary_ = now;
    count_at_last_summary_ = n;
  }
  if (latest.empty()) {
    spdlog::warn("{} more {}; {} in total", more, what_, n);
  } else {
    spdlog::warn("{} more {} (latest: {}); {} in total", more, what_, latest,
                 n);
  }
}

}  // namespace base
