#include "vmwp/guest_crash.h"

#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vmwp {
namespace {

using hvstack::internal::GuestCrashReport;
using ::testing::HasSubstr;

constexpr std::array<uint64_t, 5> kNoParams = {0, 0, 0x2000, 0x1000, 0};

// The tail of a Linux 6.1 kmsg dump as hv_kmsg_dump hands it over (syslog
// prefixes off, printk times on).
const char kLinuxPanicTail[] =
    "[   47.912345] VFS: Cannot open root device \"sda1\" or "
    "unknown-block(0,0): error -6\n"
    "[   47.913000] Please append a correct \"root=\" boot option; here are "
    "the available partitions:\n"
    "[   47.914000] Kernel panic - not syncing: VFS: Unable to mount root fs "
    "on unknown-block(0,0)\n"
    "[   47.915000] CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0 #1\n"
    "[   47.916000] Call Trace:\n";

hvcore::hyperv::GuestCrashReport Report(std::string message, uint32_t vp = 0) {
  return {.vp_index = vp, .params = kNoParams, .message = std::move(message)};
}

TEST(SummarizeGuestCrashTest, PicksLinuxsPanicLine) {
  EXPECT_EQ(SummarizeGuestCrash(kLinuxPanicTail, kNoParams),
            "Kernel panic - not syncing: VFS: Unable to mount root fs on "
            "unknown-block(0,0)");
}

TEST(SummarizeGuestCrashTest, ElseTheFirstLineWithoutItsTimestamp) {
  EXPECT_EQ(
      SummarizeGuestCrash("\n\n[    1.000000] oops: it broke\nmore", kNoParams),
      "oops: it broke");
  EXPECT_EQ(SummarizeGuestCrash("guest: BUGCHECK 0x50\n", kNoParams),
            "guest: BUGCHECK 0x50");
}

TEST(SummarizeGuestCrashTest, ParametersWhenThereIsNoMessage) {
  EXPECT_EQ(SummarizeGuestCrash("", {1, 2, 0xfff, 4, 5}),
            "crash parameters P0=0x1 P1=0x2 P2=0xfff P3=0x4 P4=0x5");
  EXPECT_EQ(SummarizeGuestCrash(" \n\t\n", {0, 0, 0, 0, 0}),
            "crash parameters P0=0x0 P1=0x0 P2=0x0 P3=0x0 P4=0x0");
}

TEST(SummarizeGuestCrashTest, HostileTextIsEscapedAndBounded) {
  std::string evil = "\x1b[2J\x1b]0;pwned\x07" + std::string(10000, 'A');
  std::string summary = SummarizeGuestCrash(evil, kNoParams);
  EXPECT_LE(summary.size(), kMaxCrashSummaryBytes);
  EXPECT_EQ(summary.find('\x1b'), std::string::npos);
  EXPECT_THAT(summary, HasSubstr("\\x1b[2J"));
}

TEST(DescribeGuestCrashTest, KeepsTheTailSanitizedAndStopsAtNul) {
  std::string page = std::string(kLinuxPanicTail);
  page += std::string("\0garbage after the text", 23);
  GuestCrashReport r =
      DescribeGuestCrash(Report(page, 1), absl::FromUnixSeconds(1000));
  EXPECT_EQ(r.time_us(), 1000000000);
  EXPECT_EQ(r.vp(), 1u);
  ASSERT_EQ(r.parameters_size(), 5);
  EXPECT_EQ(r.parameters(2), 0x2000u);
  EXPECT_EQ(r.message(), kLinuxPanicTail);
  EXPECT_THAT(r.summary(), HasSubstr("Unable to mount root fs"));

  std::string long_log;
  for (int i = 0; i < 500; ++i) long_log += "line " + std::to_string(i) + "\n";
  r = DescribeGuestCrash(Report(long_log), absl::Now());
  EXPECT_LE(r.message().size(), kMaxCrashMessageBytes);
  EXPECT_THAT(r.message(), HasSubstr("line 499\n")) << "the tail is kept";
  EXPECT_EQ(r.summary(), "line 0");
}

// What the monitor did, in order.
struct Recorder {
  std::vector<std::string> calls;
  std::vector<GuestCrashReport> published;
  GuestCrashMonitor::Actions Actions() {
    return {
        .hold_vps = [this] { calls.push_back("hold"); },
        .end = [this](const std::string& d) { calls.push_back("end: " + d); },
        .reboot =
            [this](const std::string& d) { calls.push_back("reboot: " + d); },
        .publish =
            [this](const GuestCrashReport& r) {
              calls.push_back("publish");
              published.push_back(r);
            },
    };
  }
};

TEST(GuestCrashMonitorTest, EndHoldsPublishesAndEndsWithTheSummary) {
  GuestCrashMonitor monitor;  // END by default, as the API's STOP.
  Recorder rec;
  monitor.SetActions(rec.Actions());
  monitor.OnGuestCrash(Report(kLinuxPanicTail));
  EXPECT_THAT(rec.calls,
              ::testing::ElementsAre(
                  "hold", "publish",
                  "end: Kernel panic - not syncing: VFS: Unable to mount "
                  "root fs on unknown-block(0,0)"));
  ASSERT_EQ(rec.published.size(), 1u);
  EXPECT_EQ(rec.published[0].action(),
            hvstack::internal::GUEST_CRASH_ACTION_END);
  ASSERT_TRUE(monitor.last().has_value());
}

TEST(GuestCrashMonitorTest, RebootAsksForAFreshWorkerSayingWhy) {
  GuestCrashMonitor monitor(hvstack::internal::GUEST_CRASH_ACTION_REBOOT);
  Recorder rec;
  monitor.SetActions(rec.Actions());
  monitor.OnGuestCrash(Report("guest: BUGCHECK 0x50"));
  EXPECT_THAT(rec.calls, ::testing::ElementsAre(
                             "hold", "publish",
                             "reboot: guest crashed: guest: BUGCHECK 0x50"));
}

TEST(GuestCrashMonitorTest, PauseHoldsUntilResumeAndCountsFloods) {
  GuestCrashMonitor monitor(hvstack::internal::GUEST_CRASH_ACTION_PAUSE);
  Recorder rec;
  monitor.SetActions(rec.Actions());
  // A guest that writes the crash MSRs in a loop, from two VPs at once.
  std::vector<std::thread> vps;
  for (uint32_t vp = 0; vp < 2; ++vp) {
    vps.emplace_back([&monitor, vp] {
      for (int i = 0; i < 500; ++i) monitor.OnGuestCrash(Report("boom", vp));
    });
  }
  for (std::thread& t : vps) t.join();
  EXPECT_THAT(rec.calls, ::testing::ElementsAre("hold", "publish"))
      << "one report per crash";
  ASSERT_TRUE(monitor.last().has_value());
  EXPECT_EQ(monitor.last()->suppressed_reports(), 999u);
  EXPECT_EQ(monitor.last()->action(),
            hvstack::internal::GUEST_CRASH_ACTION_PAUSE);

  // Resumed, the guest crashes again: a new report, under the action now in
  // force.
  monitor.OnResume();
  monitor.SetAction(hvstack::internal::GUEST_CRASH_ACTION_END);
  monitor.OnGuestCrash(Report("boom again"));
  EXPECT_THAT(rec.calls, ::testing::ElementsAre("hold", "publish", "hold",
                                                "publish", "end: boom again"));
  EXPECT_EQ(monitor.last()->suppressed_reports(), 0u);
}

TEST(GuestCrashMonitorTest, UnknownActionsMeanEnd) {
  GuestCrashMonitor monitor(
      static_cast<hvstack::internal::GuestCrashAction>(77));
  EXPECT_EQ(monitor.action(), hvstack::internal::GUEST_CRASH_ACTION_END);
  monitor.SetAction(hvstack::internal::GUEST_CRASH_ACTION_UNSPECIFIED);
  EXPECT_EQ(monitor.action(), hvstack::internal::GUEST_CRASH_ACTION_END);
}

}  // namespace
}  // namespace vmwp
