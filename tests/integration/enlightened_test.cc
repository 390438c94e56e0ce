// //guest:enlightened through the real binaries (vmctl -> vmms -> vmwp with
// its VMBus host and IC providers -> vid/hvcore -> KVM): the guest finds
// Hyper-V, connects to VMBus, opens every IC channel, answers heartbeats,
// gets a time sample and reports its intrinsic KVP items.
#include <grpcpp/grpcpp.h>

#include <regex>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "tests/harness/vmms_fixture.h"
#include "tests/kvmbox/kvmbox.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;

// integration.heartbeat of `vmctl --json show`, or "" while it is absent.
std::string Heartbeat(const nlohmann::json& vm) {
  if (!vm.is_object() || !vm.contains("integration") ||
      !vm["integration"].is_object()) {
    return "";
  }
  return vm["integration"].value("heartbeat", "");
}

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
    if (HasFailure()) {
      std::cerr << "guest console:\n" << Console();
      if (vmms_ != nullptr) std::cerr << "vmms log:\n" << vmms_->Log();
    }
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

  // vmctl has no shutdown/reboot command yet: the public RPCs directly.
  std::unique_ptr<hvstack::v1::VmService::Stub> Api() {
    return hvstack::v1::VmService::NewStub(grpc::CreateChannel(
        "unix:" + vmms_->socket_path(), grpc::InsecureChannelCredentials()));
  }
  void StartAndWaitForHeartbeat(const std::string& name) {
    CommandResult start = Vmctl({"start", name});
    ASSERT_EQ(start.exit_code, 0) << start.err;
    const absl::Time deadline = absl::Now() + kvmbox::Scaled(absl::Seconds(20));
    nlohmann::json vm;
    while (absl::Now() < deadline) {
      vm = Show(name);
      if (Heartbeat(vm) == "HEARTBEAT_OK" &&
          vm["integration"].value("channels", nlohmann::json::array()).size() ==
              4) {
        return;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    FAIL() << name << ": no heartbeat OK with 4 channels: " << vm.dump();
  }
};

TEST_F(EnlightenedTest, ConnectsOpensEveryIcAndAnswersHeartbeats) {
  CommandResult start = Vmctl({"start", "enl"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  WaitForState("enl", "VM_STATE_RUNNING");
  const absl::Time running = absl::Now();

  ASSERT_TRUE(WaitForConsole(std::regex("enlightened: heartbeat answered"),
                             kvmbox::Scaled(absl::Seconds(10))));
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
      kvmbox::Scaled(absl::Seconds(10))));

  // The time sample is the host's wall clock (100 ns units since 1601).
  std::smatch m;
  ASSERT_TRUE(WaitForConsole(
      std::regex("enlightened: time sample (\\d+) .*unix (\\d+)\r\n"),
      kvmbox::Scaled(absl::Seconds(10)), &m));
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
  while (absl::Now() - running < kvmbox::Scaled(absl::Seconds(20))) {
    vm = Show("kvp1");
    if (Heartbeat(vm) == "HEARTBEAT_OK") break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  const absl::Duration to_ok = absl::Now() - running;
  std::cout << "vmctl show: heartbeat OK " << absl::FormatDuration(to_ok)
            << " after vmctl saw Running" << std::endl;
  ASSERT_EQ(Heartbeat(vm), "HEARTBEAT_OK") << vm.dump();
  // Issue 5: "vmctl show reports heartbeat OK within 2 s". Measured ~0.3 s
  // here; the bound leaves room for a loaded 2-core host (and scales inside
  // kvmbox, where vmms, vmwp and vmctl run emulated).
  EXPECT_LT(to_ok, kvmbox::Scaled(absl::Seconds(2)));

  // Guest -> host: the intrinsic pool carries what the guest read from its
  // command line.
  const absl::Time deadline = absl::Now() + kvmbox::Scaled(absl::Seconds(10));
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
      kvmbox::Scaled(absl::Seconds(10))));
  CommandResult get = Vmctl({"kvp", "get", "kvp1", "build"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "2026.12-e2e\n");
  CommandResult list = Vmctl({"kvp", "list", "kvp1"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(list.out, "build=2026.12-e2e\n") << "one key, overwritten";
  EXPECT_EQ(Vmctl({"stop", "kvp1"}).exit_code, 0);
}

TEST_F(EnlightenedTest, ShutdownVmGoesThroughTheShutdownIc) {
  StartAndWaitForHeartbeat("enl");
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(60));
  hvstack::v1::ShutdownVmRequest request;
  request.set_name("enl");
  request.mutable_timeout()->set_seconds(30);
  // FAIL rather than FORCE_OFF: a stop would also end in Off, this must not.
  request.set_fallback(hvstack::v1::ShutdownVmRequest::FALLBACK_FAIL);
  hvstack::v1::Vm vm;
  const absl::Time asked = absl::Now();
  grpc::Status status = Api()->ShutdownVm(&context, request, &vm);
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::cout << "ShutdownVm returned after "
            << absl::FormatDuration(absl::Now() - asked) << std::endl;
  nlohmann::json shown = WaitForState("enl", "VM_STATE_OFF");
  EXPECT_EQ(shown.value("stateReason", ""),
            "guest shut down: shutdown requested by user");
  const std::string out = Console();
  EXPECT_THAT(out, ::testing::ContainsRegex(
                       "enlightened: shutdown requested: flags 0 reason "
                       "0x[0-9a-f]+ message \"[^\"]*\""));
  EXPECT_THAT(out, HasSubstr("enlightened: vmbus unloaded"));
  EXPECT_THAT(out, HasSubstr("enlightened: powering off"));
}

TEST_F(EnlightenedTest, RebootVmGoesThroughTheShutdownIcAndTheGuestComesBack) {
  StartAndWaitForHeartbeat("enl");
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(60));
  hvstack::v1::RebootVmRequest request;
  request.set_name("enl");
  hvstack::v1::Vm vm;
  grpc::Status status = Api()->RebootVm(&context, request, &vm);
  ASSERT_TRUE(status.ok()) << status.error_message();
  // The guest acknowledges (flags 2), unloads VMBus and resets through the
  // i8042; vmms gives the VM a fresh worker, and the guest connects again.
  const absl::Time deadline = absl::Now() + kvmbox::Scaled(absl::Seconds(30));
  nlohmann::json shown;
  while (absl::Now() < deadline) {
    shown = Show("enl");
    if (shown.value("rebootCount", 0) == 1 &&
        Heartbeat(shown) == "HEARTBEAT_OK") {
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(shown.value("state", ""), "VM_STATE_RUNNING") << shown.dump();
  EXPECT_EQ(shown.value("rebootCount", 0), 1) << shown.dump();
  EXPECT_EQ(Heartbeat(shown), "HEARTBEAT_OK") << shown.dump();
  EXPECT_EQ(Vmctl({"stop", "enl"}).exit_code, 0);
  WaitForState("enl", "VM_STATE_OFF");
  // With the VM off, the console is the whole log: both boots.
  const std::string out = Console();
  const size_t restart = out.find(
      "enlightened: shutdown requested: flags 2 reason 0x00000000 "
      "message \"reboot requested by user\"");
  ASSERT_NE(restart, std::string::npos) << out;
  const size_t second_boot = out.find("enlightened: start", restart);
  ASSERT_NE(second_boot, std::string::npos) << out;
  EXPECT_NE(out.find("enlightened: vmbus unloaded", restart),
            std::string::npos);
  EXPECT_LT(out.find("enlightened: restarting", restart), second_boot);
  EXPECT_NE(out.find("enlightened: heartbeat answered", second_boot),
            std::string::npos);
}

TEST_F(EnlightenedTest, ResumeSendsATimeSyncWithTheHostsClock) {
  StartAndWaitForHeartbeat("enl");
  const std::regex sample(
      "enlightened: time sample (\\d+) flags 1 .*unix (\\d+)\r\n");
  ASSERT_TRUE(WaitForConsole(sample, kvmbox::Scaled(absl::Seconds(10))));
  auto api = Api();
  {
    grpc::ClientContext context;
    hvstack::v1::PauseVmRequest request;
    request.set_name("enl");
    hvstack::v1::Vm vm;
    grpc::Status status = api->PauseVm(&context, request, &vm);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  absl::SleepFor(absl::Seconds(2));  // the guest's clock stands still
  const int64_t resumed_at = absl::ToUnixSeconds(absl::Now());
  {
    grpc::ClientContext context;
    hvstack::v1::ResumeVmRequest request;
    request.set_name("enl");
    hvstack::v1::Vm vm;
    grpc::Status status = api->ResumeVm(&context, request, &vm);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  // A second SYNC sample, carrying the host's time after the pause.
  const std::regex two_samples(
      "time sample \\d+ flags 1 [^\r]*unix (\\d+)\r\n(.|\r|\n)*"
      "time sample \\d+ flags 1 [^\r]*unix (\\d+)\r\n");
  std::smatch m;
  ASSERT_TRUE(
      WaitForConsole(two_samples, kvmbox::Scaled(absl::Seconds(10)), &m));
  const int64_t first = std::stoll(m[1].str());
  const int64_t second = std::stoll(m[3].str());
  EXPECT_GE(second - first, 2) << "the pause lasted 2 s";
  EXPECT_LE(std::abs(second - resumed_at), 5);
  EXPECT_EQ(Vmctl({"stop", "enl"}).exit_code, 0);
}

}  // namespace
}  // namespace hvtest
