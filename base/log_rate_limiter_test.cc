#include "base/log_rate_limiter.h"

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace base {
namespace {

using ::testing::HasSubstr;

// Captures what the default logger writes.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    sink->set_pattern("%v");
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("t", sink));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::vector<std::string> Lines() const {
    std::vector<std::string> lines;
    std::istringstream in(out_.str());
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST(LogRateLimiterTest, LogsTheBurstThenSaysItWillSummarize) {
  CapturedLog log;
  LogRateLimiter limiter("bad things", 3, absl::Hours(1));
  int logged = 0;
  for (int i = 0; i < 100; ++i) limiter.Note([&] { ++logged; });
  EXPECT_EQ(logged, 3);
  EXPECT_EQ(limiter.count(), 100u);
  const auto lines = log.Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("further bad things are summarized"));
}

TEST(LogRateLimiterTest, OneSummaryPerIntervalCountingWhatWasSkipped) {
  CapturedLog log;
  LogRateLimiter limiter("bad things", 2, absl::Milliseconds(50));
  int latest_calls = 0;
  auto latest = [&] {
    ++latest_calls;
    return std::string("port 0x6f0");
  };
  for (int i = 0; i < 10; ++i) limiter.Note([] {}, latest);
  EXPECT_EQ(latest_calls, 0);  // within the interval: no summary, no detail
  absl::SleepFor(absl::Milliseconds(60));
  for (int i = 0; i < 10; ++i) limiter.Note([] {}, latest);
  EXPECT_EQ(latest_calls, 1);
  const auto lines = log.Lines();
  ASSERT_EQ(lines.size(), 2u);
  // Events 3..11 since the end of the burst; the summary is written at 11.
  EXPECT_EQ(lines[1], "9 more bad things (latest: port 0x6f0); 11 in total");
}

TEST(LogRateLimiterTest, ManyThreadsStayWithinTheBound) {
  CapturedLog log;
  LogRateLimiter limiter("bad things", 16, absl::Hours(1));
  std::atomic<int> logged{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) limiter.Note([&] { ++logged; });
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(logged.load(), 16);
  EXPECT_EQ(limiter.count(), 40000u);
  EXPECT_EQ(log.Lines().size(), 1u);
}

}  // namespace
}  // namespace base
