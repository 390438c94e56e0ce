#include "vmms/console_feed.h"

#include <algorithm>

namespace vmms {

ConsoleFeed::ConsoleFeed(const std::string& log_path) {
  absl::MutexLock lock(&mu_);
  log_ = std::fopen(log_path.c_str(), "ae");
}

ConsoleFeed::~ConsoleFeed() {
  absl::MutexLock lock(&mu_);
  if (log_ != nullptr) std::fclose(log_);
}

void ConsoleFeed::Append(absl::string_view data) {
  absl::MutexLock lock(&mu_);
  if (log_ != nullptr) {
    std::fwrite(data.data(), 1, data.size(), log_);
    std::fflush(log_);
  }
  buffer_.append(data.data(), data.size());
  if (buffer_.size() > kRetained) {
    const size_t drop = buffer_.size() - kRetained;
    buffer_.erase(0, drop);
    start_ += drop;
  }
}

void ConsoleFeed::End() {
  absl::MutexLock lock(&mu_);
  ended_ = true;
  writer_ = nullptr;
}

bool ConsoleFeed::Ended() const {
  absl::MutexLock lock(&mu_);
  return ended_;
}

bool ConsoleFeed::HasNews(uint64_t position) const {
  return ended_ || position < start_ + buffer_.size();
}

bool ConsoleFeed::Read(uint64_t* position, std::string* out,
                       absl::Duration timeout) {
  out->clear();
  absl::MutexLock lock(&mu_);
  struct Waiter {
    const ConsoleFeed* feed;
    uint64_t position;
  } waiter{this, *position};
  mu_.AwaitWithTimeout(absl::Condition(
                           +[](Waiter* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                             return w->feed->HasNews(w->position);
                           },
                           &waiter),
                       timeout);
  if (*position < start_) *position = start_;
  const uint64_t end = start_ + buffer_.size();
  if (*position < end) {
    out->assign(buffer_, *position - start_, end - *position);
    *position = end;
    return true;
  }
  return !ended_;
}

void ConsoleFeed::SetWriter(Writer writer) {
  absl::MutexLock lock(&mu_);
  writer_ = std::move(writer);
}

absl::Status ConsoleFeed::Write(absl::string_view data) {
  Writer writer;
  {
    absl::MutexLock lock(&mu_);
    if (writer_ == nullptr)
      return absl::FailedPreconditionError("the console has ended");
    writer = writer_;
  }
  return writer(data);
}

}  // namespace vmms
