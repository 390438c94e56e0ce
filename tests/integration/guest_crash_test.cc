// A guest's own crash (Hyper-V crash MSRs) through the public API, end to end:
// vmctl -> vmms -> sandboxed vmwp -> //guest:crash on KVM. Each policy of
// VmConfig.on_guest_crash ends where it says (stop: Crashed; restart: a fresh
// boot counted like a reboot; preserve: Paused, resumable and stoppable), the
// crash is an event of its own kind with the guest's text and parameters, and
// `vmctl show` prints the last one. Also: KVP on a guest whose KVP service is
// silent says so, and ShutdownVm/RebootVm replies carry the sandbox identity.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness/process.h"
#include "tests/harness/vmms_fixture.h"
#include "tests/kvmbox/kvmbox.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPanicLine[] = "Kernel panic - not syncing: hvstack crash test";

class GuestCrashTest : public VmmsTest {
 protected:
  void Create(const std::string& name, const std::string& cmdline,
              const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"create",       name,       "--kernel",
                                     Guest("crash"), "--memory", "64",
                                     "--cmdline",    cmdline};
    args.insert(args.end(), extra.begin(), extra.end());
    CommandResult r = Vmctl(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::string Console(const std::string& name) {
    return Vmctl({"console", name, "--no-follow"}).out;
  }
  // The event log's lines for `name`.
  std::vector<std::string> Events(const std::string& name) {
    std::vector<std::string> lines;
    for (absl::string_view line : absl::StrSplit(Vmctl({"events"}).out, '\n')) {
      if (absl::StrContains(line, absl::StrCat(" ", name, " ")))
        lines.emplace_back(line);
    }
    return lines;
  }
  // Waits until some event line of `name` contains `text`.
  bool WaitForEvent(const std::string& name, const std::string& text) {
    const absl::Time deadline = absl::Now() + kvmbox::Scaled(absl::Seconds(30));
    while (absl::Now() < deadline) {
      for (const std::string& line : Events(name)) {
        if (absl::StrContains(line, text)) return true;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }
};

// Index of the first line containing `text`, or -1.
int Find(const std::vector<std::string>& lines, const std::string& text) {
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find(text) != std::string::npos) return static_cast<int>(i);
  }
  return -1;
}

TEST_F(GuestCrashTest, StopIsTheDefaultAndRecordsTheReport) {
  Create("c1", "crash=message");
  nlohmann::json created = Show("c1");
  EXPECT_EQ(created["config"].value("onGuestCrash", ""),
            "GUEST_CRASH_POLICY_STOP")
      << "unset at create: stored and shown as the default, stop";
  EXPECT_THAT(Vmctl({"show", "c1"}).out, HasSubstr("on_guest_crash: stop\n"));

  ASSERT_EQ(Vmctl({"start", "c1"}).exit_code, 0);
  nlohmann::json vm = WaitForState("c1", "VM_STATE_CRASHED");
  EXPECT_EQ(vm.value("stateReason", ""),
            absl::StrCat("guest crashed: ", kPanicLine));
  ASSERT_TRUE(vm.contains("lastGuestCrash")) << vm.dump();
  const nlohmann::json& crash = vm["lastGuestCrash"];
  EXPECT_EQ(crash.value("summary", ""), kPanicLine);
  EXPECT_THAT(crash.value("message", ""),
              HasSubstr("[    1.000000] crash: about to report\n"));
  ASSERT_EQ(crash["parameters"].size(), 5u);
  EXPECT_NE(crash["parameters"][3].get<std::string>(), "0")
      << "P3: the message page's address";

  const std::string show = Vmctl({"show", "c1"}).out;
  EXPECT_THAT(show, ::testing::ContainsRegex(
                        "last_guest_crash: [0-9T:.Z-]+ vp0: Kernel panic - "
                        "not syncing: hvstack crash test\n"));
  EXPECT_THAT(show, HasSubstr("  parameters: 0x0 0x0 0x0 0x"));
  EXPECT_THAT(show, HasSubstr("    [    1.000001] Kernel panic - not syncing"));
  // Held at the report: the guest never ran past it.
  EXPECT_THAT(Console("c1"), HasSubstr("crash: reporting (message)"));
  EXPECT_THAT(Console("c1"), Not(HasSubstr("running after the report")));

  // The crash is an event of its own kind, before the state change it caused.
  std::vector<std::string> events = Events("c1");
  const int crashed_event = Find(events, "guest_crashed");
  const int crashed_state = Find(events, "guest crashed: Kernel panic");
  ASSERT_GE(crashed_event, 0) << Vmctl({"events"}).out;
  EXPECT_THAT(events[crashed_event],
              HasSubstr(absl::StrCat("guest crashed on vp0: ", kPanicLine)));
  ASSERT_GT(crashed_state, crashed_event);
  EXPECT_THAT(events[crashed_state], HasSubstr("state_changed"));
  EXPECT_THAT(events[crashed_state], HasSubstr("crashed"));

  // The event carries the report for API clients.
  CommandResult json = Vmctl({"--json", "events"});
  EXPECT_THAT(json.out, HasSubstr("\"KIND_GUEST_CRASHED\""));
  EXPECT_THAT(json.out, HasSubstr("\"guestCrash\""));

  // A start afterwards keeps the report until the next crash.
  ASSERT_EQ(Vmctl({"start", "c1"}).exit_code, 0);
  WaitForState("c1", "VM_STATE_CRASHED");
  EXPECT_EQ(Show("c1")["lastGuestCrash"].value("summary", ""), kPanicLine);
}

TEST_F(GuestCrashTest, ParametersOnlyReportIsSummarizedByItsParameters) {
  Create("c2", "crash=params");
  ASSERT_EQ(Vmctl({"start", "c2"}).exit_code, 0);
  nlohmann::json vm = WaitForState("c2", "VM_STATE_CRASHED");
  EXPECT_EQ(vm.value("stateReason", ""),
            "guest crashed: crash parameters P0=0x1e P1=0x8100000000010000 "
            "P2=0xffffffff81000000 P3=0xdead P4=0x7000");
  EXPECT_EQ(vm["lastGuestCrash"].value("message", ""), "");
}

TEST_F(GuestCrashTest, RestartBootsAgainCountedLikeAReboot) {
  Create("c3", "crash=message", {"--on-guest-crash", "restart"});
  EXPECT_THAT(Vmctl({"show", "c3"}).out,
              HasSubstr("on_guest_crash: restart\n"));
  ASSERT_EQ(Vmctl({"start", "c3"}).exit_code, 0);
  // Every boot crashes again: each is a fresh worker and a counted reboot.
  const absl::Time deadline = absl::Now() + kvmbox::Scaled(absl::Seconds(30));
  nlohmann::json vm;
  while (absl::Now() < deadline) {
    vm = Show("c3");
    if (vm.value("rebootCount", 0) >= 3) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_GE(vm.value("rebootCount", 0), 3) << vm.dump();
  EXPECT_TRUE(
      WaitForEvent("c3", "guest rebooted: guest crashed: Kernel panic"));
  EXPECT_TRUE(WaitForEvent("c3", "guest_crashed"));
  // Several boots in the console log, none ran past its report.
  const std::string console = Console("c3");
  EXPECT_GE(std::count(console.begin(), console.end(), '\n'), 2);
  EXPECT_THAT(console, Not(HasSubstr("running after the report")));
  ASSERT_EQ(Vmctl({"stop", "c3"}).exit_code, 0);
  WaitForState("c3", "VM_STATE_OFF");
}

TEST_F(GuestCrashTest, PreserveHoldsThePausedGuestUntilResumeOrStop) {
  Create("c4", "crash=message", {"--on-guest-crash", "preserve"});
  ASSERT_EQ(Vmctl({"start", "c4"}).exit_code, 0);
  nlohmann::json vm = WaitForState("c4", "VM_STATE_PAUSED");
  EXPECT_EQ(vm.value("stateReason", ""),
            absl::StrCat("guest crashed: ", kPanicLine));
  EXPECT_EQ(vm["lastGuestCrash"].value("summary", ""), kPanicLine);
  EXPECT_NE(vm.value("workerPid", "0"), "0") << "memory kept: the worker runs";
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_THAT(Console("c4"), Not(HasSubstr("running after the report")));
  EXPECT_TRUE(WaitForEvent("c4", "guest_crashed"));

  // Resumed, the guest runs on from its report and powers off.
  CommandResult resume = Vmctl({"resume", "c4"});
  ASSERT_EQ(resume.exit_code, 0) << resume.err;
  vm = WaitForState("c4", "VM_STATE_OFF");
  EXPECT_EQ(vm.value("stateReason", ""), "guest powered off");
  EXPECT_THAT(Console("c4"), HasSubstr("crash: running after the report"));

  // Preserved again, then stopped.
  ASSERT_EQ(Vmctl({"start", "c4"}).exit_code, 0);
  WaitForState("c4", "VM_STATE_PAUSED");
  ASSERT_EQ(Vmctl({"stop", "c4"}).exit_code, 0);
  WaitForState("c4", "VM_STATE_OFF");
}

// A guest that keeps writing CRASH_CTL: each report is held, so each is one
// crash and one event; the policy a client sets meanwhile applies to the next.
TEST_F(GuestCrashTest, FloodingGuestGetsOneEventPerCrashAndThePolicyInForce) {
  Create("c5", "crash=params flood=500 after=spin",
         {"--on-guest-crash", "preserve"});
  ASSERT_EQ(Vmctl({"start", "c5"}).exit_code, 0);
  WaitForState("c5", "VM_STATE_PAUSED");
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(Vmctl({"resume", "c5"}).exit_code, 0);
    WaitForState("c5", "VM_STATE_PAUSED");
  }
  // The policy changes while the VM is paused; the running worker is told.
  CommandResult update = Vmctl({"update", "c5", "--on-guest-crash", "stop"});
  ASSERT_EQ(update.exit_code, 0) << update.err;
  EXPECT_THAT(update.out, HasSubstr("on_guest_crash: stop\n"));
  ASSERT_EQ(Vmctl({"resume", "c5"}).exit_code, 0);
  nlohmann::json vm = WaitForState("c5", "VM_STATE_CRASHED");
  EXPECT_THAT(vm.value("stateReason", ""),
              HasSubstr("guest crashed: crash parameters"));
  std::vector<std::string> events = Events("c5");
  EXPECT_EQ(std::count_if(events.begin(), events.end(),
                          [](const std::string& l) {
                            return l.find("guest_crashed") != std::string::npos;
                          }),
            4)
      << "one event per crash, not per CRASH_CTL write";
}

TEST_F(GuestCrashTest, BadPoliciesAreRefused) {
  CommandResult bad = Vmctl({"create", "c6", "--kernel", Guest("crash"),
                             "--on-guest-crash", "ignore"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("--on-guest-crash"));
  Create("c6", "");
  CommandResult update = Vmctl({"update", "c6", "--on-guest-crash", "reboot"});
  EXPECT_NE(update.exit_code, 0);
  EXPECT_THAT(Vmctl({"show", "c6"}).out, HasSubstr("on_guest_crash: stop\n"));
}

TEST_F(GuestCrashTest, KvpOnASilentKvpServiceSaysTheServiceIsNotAnswering) {
  ASSERT_EQ(Vmctl({"create", "k1", "--kernel", Guest("enlightened"), "--memory",
                   "64", "--cmdline", "kvp=silent"})
                .exit_code,
            0);
  ASSERT_EQ(Vmctl({"start", "k1"}).exit_code, 0);
  const absl::Time deadline = absl::Now() + kvmbox::Scaled(absl::Seconds(30));
  std::string show;
  while (absl::Now() < deadline) {
    show = Vmctl({"show", "k1"}).out;
    if (show.find("heartbeat: OK") != std::string::npos &&
        show.find("kvp: opened, not answering") != std::string::npos)
      break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_THAT(show, HasSubstr("  heartbeat: running\n"));
  EXPECT_THAT(show, HasSubstr("  kvp: opened, not answering\n"));
  nlohmann::json vm = Show("k1");
  bool found = false;
  for (const nlohmann::json& c : vm["integration"]["components"]) {
    if (c.value("name", "") != "kvp") continue;
    found = true;
    EXPECT_TRUE(c.value("offered", false));
    EXPECT_TRUE(c.value("opened", false));
    EXPECT_FALSE(c.value("negotiated", false));
  }
  EXPECT_TRUE(found) << vm.dump();
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"kvp", "list", "k1"},
                                             {"kvp", "get", "k1", "role"},
                                             {"kvp", "set", "k1", "a", "b"}}) {
    CommandResult r = Vmctl(args);
    EXPECT_EQ(r.exit_code, 3) << r.err;
    EXPECT_THAT(r.err, HasSubstr("FAILED_PRECONDITION"));
    EXPECT_THAT(r.err, HasSubstr("opened its KVP channel but its key-value "
                                 "exchange service is not answering"));
    EXPECT_THAT(r.err, HasSubstr("hv_kvp_daemon is not running"));
    EXPECT_THAT(r.err, Not(HasSubstr("no KVP channel open")));
  }
  ASSERT_EQ(Vmctl({"stop", "k1"}).exit_code, 0);
}

// The Vm in a ShutdownVm or RebootVm reply is the Vm GetVm shows (sandbox
// identity included), not the bare stored row.
TEST_F(GuestCrashTest, ShutdownAndRebootRepliesCarryTheSandboxIdentity) {
  ASSERT_EQ(Vmctl({"create", "s1", "--kernel", Guest("enlightened"), "--memory",
                   "64"})
                .exit_code,
            0);
  ASSERT_EQ(Vmctl({"start", "s1"}).exit_code, 0);
  const absl::Time deadline = absl::Now() + kvmbox::Scaled(absl::Seconds(30));
  while (absl::Now() < deadline &&
         Vmctl({"show", "s1"}).out.find("shutdown: running") ==
             std::string::npos) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  const nlohmann::json shown = Show("s1");
  ASSERT_TRUE(shown.contains("sandbox")) << shown.dump();
  const nlohmann::json sandbox = shown["sandbox"];

  CommandResult reboot = Vmctl({"--json", "reboot", "s1"});
  ASSERT_EQ(reboot.exit_code, 0) << reboot.err;
  nlohmann::json reply = nlohmann::json::parse(reboot.out, nullptr, false);
  EXPECT_EQ(reply["sandbox"], sandbox) << reboot.out;
  EXPECT_THAT(Vmctl({"reboot", "s1"}).out,
              Not(HasSubstr("uid assigned at first start")));

  while (absl::Now() < deadline + kvmbox::Scaled(absl::Seconds(30)) &&
         Vmctl({"show", "s1"}).out.find("shutdown: running") ==
             std::string::npos) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  CommandResult shutdown = Vmctl({"--json", "shutdown", "s1"});
  ASSERT_EQ(shutdown.exit_code, 0) << shutdown.err;
  reply = nlohmann::json::parse(shutdown.out, nullptr, false);
  EXPECT_EQ(reply["sandbox"], sandbox) << shutdown.out;
  EXPECT_EQ(reply.value("state", ""), "VM_STATE_OFF");
}

}  // namespace
}  // namespace hvtest
