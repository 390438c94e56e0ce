// //guest:enlightened through the real binaries (vmctl -> vmms -> vmwp with
// its VMBus host and IC providers -> vid/hvcore -> KVM): the guest finds
// Hyper-V, connects to VMBus, opens every IC channel, answers heartbeats,
// gets a time sample and reports its intrinsic KVP items.
#include <regex>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/vmms_fixture.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;

class EnlightenedTest : public VmmsTest {
 protected:
  void SetUp() override {
    VmmsTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    CommandResult create = Vmctl(
        {"create", "enl", "--kernel", Guest("enlightened"), "--memory", "64"});
    ASSERT_EQ(create.exit_code, 0) << create.err;
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "guest console:\n" << Console();
  }

  std::string Console() { return Vmctl({"console", vm_, "--no-follow"}).out; }
  std::string vm_ = "enl";
  // Polls the console until `pattern` matches or `timeout` passes.
  bool WaitForConsole(const std::regex& pattern, absl::Duration timeout,
                      std::smatch* match = nullptr) {
    const absl::Time deadline = absl::Now() + timeout;
    std::smatch local;
    std::smatch& m = match != nullptr ? *match : local;
    while (true) {
      console_ = Console();
      if (std::regex_search(console_, m, pattern)) return true;
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  std::string console_;
};

TEST_F(EnlightenedTest, ConnectsOpensEveryIcAndAnswersHeartbeats) {
  CommandResult start = Vmctl({"start", "enl"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  WaitForState("enl", "VM_STATE_RUNNING");
  const absl::Time running = absl::Now();

  ASSERT_TRUE(WaitForConsole(std::regex("enlightened: heartbeat answered"),
                             absl::Seconds(10)));
  std::cout << "first heartbeat answered (guest console) "
            << absl::FormatDuration(absl::Now() - running)
            << " after vmctl saw Running" << std::endl;
  EXPECT_THAT(console_, HasSubstr("enlightened: hyper-v detected: version "
                                  "10.0 build 14393"));
  EXPECT_THAT(console_, HasSubstr("enlightened: vmbus version 5.3"));
  for (const char* ic : {"heartbeat", "shutdown", "timesync", "kvp"}) {
    EXPECT_THAT(console_, HasSubstr(absl::StrCat("enlightened: opened ", ic)));
    EXPECT_THAT(console_,
                HasSubstr(absl::StrCat("enlightened: ", ic,
                                       " negotiated: framework 3.0")));
  }
  // The guest serves one packet per channel per round, heartbeat first: the
  // host's first KVP enumerate can be answered a round after the heartbeat.
  EXPECT_TRUE(WaitForConsole(
      std::regex("enlightened: kvp: host reads the intrinsic pool"),
      absl::Seconds(10)));

  // The time sample is the host's wall clock (100 ns units since 1601).
  std::smatch m;
  ASSERT_TRUE(WaitForConsole(
      std::regex("enlightened: time sample (\\d+) .*unix (\\d+)\r\n"),
      absl::Seconds(10), &m));
  const int64_t unix_seconds = std::stoll(m[2].str());
  EXPECT_LT(std::abs(unix_seconds - absl::ToUnixSeconds(absl::Now())), 120);
  EXPECT_EQ((std::stoull(m[1].str()) - 116444736000000000ull) / 10000000,
            static_cast<uint64_t>(unix_seconds));

  CommandResult stop = Vmctl({"stop", "enl"});
  EXPECT_EQ(stop.exit_code, 0) << stop.err;
  WaitForState("enl", "VM_STATE_OFF");
}

TEST_F(EnlightenedTest, HeartbeatInShowAndKvpBothWaysAnsweredByTheGuest) {
  vm_ = "kvp1";
  ASSERT_EQ(Vmctl({"create", "kvp1", "--kernel", Guest("enlightened"),
                   "--memory", "64", "--cmdline", "hostname=kvp1.test"})
                .exit_code,
            0);
  CommandResult start = Vmctl({"start", "kvp1"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  WaitForState("kvp1", "VM_STATE_RUNNING");
  const absl::Time running = absl::Now();
  nlohmann::json vm;
  while (absl::Now() - running < absl::Seconds(20)) {
    vm = Show("kvp1");
    if (vm["integration"].value("heartbeat", "") == "HEARTBEAT_OK") break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  const absl::Duration to_ok = absl::Now() - running;
  std::cout << "vmctl show: heartbeat OK " << absl::FormatDuration(to_ok)
            << " after vmctl saw Running" << std::endl;
  ASSERT_EQ(vm["integration"].value("heartbeat", ""), "HEARTBEAT_OK")
      << vm.dump();
  // Issue 5: "vmctl show reports heartbeat OK within 2 s". Measured ~0.3 s
  // here; the bound leaves room for a loaded 2-core host.
  EXPECT_LT(to_ok, absl::Seconds(2));

  // Guest -> host: the intrinsic pool carries what the guest read from its
  // command line.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (vm["integration"].value("hostName", "") != "kvp1.test" &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
    vm = Show("kvp1");
  }
  EXPECT_EQ(vm["integration"].value("hostName", ""), "kvp1.test") << vm.dump();
  CommandResult intrinsic = Vmctl(
      {"kvp", "get", "kvp1", "FullyQualifiedDomainName", "--pool", "auto"});
  EXPECT_EQ(intrinsic.exit_code, 0) << intrinsic.err;
  EXPECT_EQ(intrinsic.out, "kvp1.test\n");

  // Host -> guest: the guest prints what it stored, and answers GET and
  // ENUMERATE from its own store (not from a host-side cache).
  ASSERT_EQ(Vmctl({"kvp", "set", "kvp1", "build", "2026.11-e2e"}).exit_code, 0);
  ASSERT_EQ(Vmctl({"kvp", "set", "kvp1", "build", "2026.12-e2e"}).exit_code, 0);
  EXPECT_TRUE(WaitForConsole(
      std::regex("enlightened: kvp set pool 0: build = 2026.12-e2e"),
      absl::Seconds(10)));
  CommandResult get = Vmctl({"kvp", "get", "kvp1", "build"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "2026.12-e2e\n");
  CommandResult list = Vmctl({"kvp", "list", "kvp1"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(list.out, "build=2026.12-e2e\n") << "one key, overwritten";
  EXPECT_EQ(Vmctl({"stop", "kvp1"}).exit_code, 0);
}

}  // namespace
}  // namespace hvtest
