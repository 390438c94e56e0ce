// In-place reboot, reboot-loop protection and interactive console input, end
// to end through the real binaries: vmctl -> vmms -> vmwp -> vid -> KVM, with
// guests the build produces (//guest:reboot_once, //guest:echo).
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/process.h"
#include "tests/harness/vmms_fixture.h"
#include "tests/harness/vmms_instance.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Single-quotes `s` for /bin/sh.
std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

class RebootConsoleTest : public VmmsTest {
 protected:
  // Polls `vmctl console --no-follow` until it contains `text`.
  std::string WaitForConsole(const std::string& name, const std::string& text,
                             absl::Duration timeout = absl::Seconds(30)) {
    const absl::Time deadline = absl::Now() + timeout;
    std::string out;
    while (absl::Now() < deadline) {
      out = Vmctl({"console", name, "--no-follow"}).out;
      if (out.find(text) != std::string::npos) return out;
      absl::SleepFor(absl::Milliseconds(50));
    }
    ADD_FAILURE() << name << "'s console never showed \"" << text
                  << "\"; last: " << out;
    return out;
  }

  void Create(const std::string& name, const std::string& kernel,
              const std::string& cmdline = "") {
    std::vector<std::string> args = {"create", name,       "--kernel",
                                     kernel,   "--memory", "64"};
    if (!cmdline.empty()) {
      args.push_back("--cmdline");
      args.push_back(cmdline);
    }
    CommandResult r = Vmctl(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // `vmctl console NAME` with `shell_input` (a shell pipeline's output) as
  // its stdin.
  CommandResult ConsoleWithInput(const std::string& name,
                                 const std::string& shell_input,
                                 absl::Duration timeout = absl::Seconds(60)) {
    const std::string command = absl::StrCat(
        shell_input, " | ", Quote(Runfile("cli/vmctl")), " --socket ",
        Quote(vmms_->socket_path()), " console ", Quote(name));
    absl::StatusOr<CommandResult> r =
        RunCommand({"/bin/sh", "-c", command}, {}, timeout);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CommandResult{};
  }
};

TEST_F(RebootConsoleTest, GuestRebootGetsAFreshWorkerAndTheCountIsRecorded) {
  Create("rb1", Guest("reboot_once"));
  CommandResult start = Vmctl({"start", "rb1"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  nlohmann::json vm = WaitForState("rb1", "VM_STATE_OFF");
  EXPECT_EQ(vm.value("stateReason", ""), "guest powered off");
  EXPECT_EQ(vm.value("rebootCount", 0), 1) << vm.dump();

  // A fresh worker per boot, one console log: both boots are in it, in
  // order, and the CMOS RAM counter survived the reboot (vmms carried it
  // from the first worker's exit report to the second one's config).
  const std::string console = Vmctl({"console", "rb1", "--no-follow"}).out;
  const size_t boot1 = console.find("reboot_once: boot 1\r\n");
  const size_t boot2 = console.find("reboot_once: boot 2\r\n");
  ASSERT_NE(boot1, std::string::npos) << console;
  ASSERT_NE(boot2, std::string::npos) << console;
  EXPECT_LT(boot1, boot2);
  EXPECT_THAT(console, HasSubstr("reboot_once: done after 1 reboot(s)"));
  EXPECT_EQ(console.find("reset was ignored"), std::string::npos);
  // The RTC reads the host's wall clock (the year, at least).
  const std::string year =
      absl::FormatTime("%Y", absl::Now(), absl::UTCTimeZone());
  EXPECT_THAT(console, HasSubstr("reboot_once: rtc " + year + "-"));

  // `show` prints the count too; a new start counts from 0 again.
  EXPECT_THAT(Vmctl({"show", "rb1"}).out, HasSubstr("reboot_count: 1\n"));
  // The event says why.
  EXPECT_THAT(Vmctl({"events"}).out,
              HasSubstr("guest rebooted: guest pulsed the i8042"));
}

TEST_F(RebootConsoleTest, AttachedConsoleFollowsTheVmAcrossAReboot) {
  Create("echo2", Guest("echo"));
  ASSERT_EQ(Vmctl({"start", "echo2"}).exit_code, 0);
  WaitForConsole("echo2", "echo: ready");
  // One `vmctl console` session: input before the reboot reaches the first
  // worker, input after it the second; the output of both arrives.
  CommandResult console = ConsoleWithInput(
      "echo2",
      "(printf 'before\\n'; sleep 1; printf 'reboot\\n'; sleep 2; "
      "printf 'after\\n'; sleep 1; printf 'poweroff\\n')");
  EXPECT_EQ(console.exit_code, 0) << console.err;
  EXPECT_THAT(console.out, HasSubstr("echo: before\r\n"));
  EXPECT_THAT(console.out, HasSubstr("echo: rebooting"));
  EXPECT_THAT(console.out, HasSubstr("echo: after\r\n"));
  EXPECT_THAT(console.out, HasSubstr("echo: powering off"));
  const size_t rebooting = console.out.find("echo: rebooting");
  EXPECT_NE(console.out.find("echo: ready", rebooting), std::string::npos)
      << console.out;
  nlohmann::json vm = WaitForState("echo2", "VM_STATE_OFF");
  EXPECT_EQ(vm.value("rebootCount", 0), 1) << vm.dump();
  // console.log kept appending across the workers.
  const std::string log = Vmctl({"console", "echo2", "--no-follow"}).out;
  EXPECT_LT(log.find("echo: before"), log.find("echo: after")) << log;
}

TEST_F(RebootConsoleTest, SeveralRebootsWhileRunningKeepItRunning) {
  Create("rb3", Guest("reboot_once"), "reboots=3");
  ASSERT_EQ(Vmctl({"start", "rb3"}).exit_code, 0);
  nlohmann::json vm = WaitForState("rb3", "VM_STATE_OFF");
  EXPECT_EQ(vm.value("rebootCount", 0), 3) << vm.dump();
  EXPECT_THAT(Vmctl({"console", "rb3", "--no-follow"}).out,
              HasSubstr("reboot_once: boot 4\r\n"));
}

TEST_F(RebootConsoleTest, RebootLoopEndsCrashed) {
  Create("loop", Guest("reboot_once"), "reboots=always");
  ASSERT_EQ(Vmctl({"start", "loop"}).exit_code, 0);
  nlohmann::json vm = WaitForState("loop", "VM_STATE_CRASHED");
  EXPECT_THAT(vm.value("stateReason", ""),
              StartsWith("guest crashed: reboot loop: 11 reboots within 1m"));
  EXPECT_EQ(vm.value("rebootCount", 0), 10) << vm.dump();
}

// A running VM's console history spans its boots: after a reset (a fresh
// worker with an empty ring) `console --no-follow` still shows the first boot.
TEST_F(RebootConsoleTest, NoFollowConsoleShowsEveryBootWhileRunning) {
  Create("echo3", Guest("echo"));
  ASSERT_EQ(Vmctl({"start", "echo3"}).exit_code, 0);
  WaitForConsole("echo3", "echo: ready");
  CommandResult reset = Vmctl({"reset", "echo3"});
  ASSERT_EQ(reset.exit_code, 0) << reset.err;
  const auto count = [](const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos;
         at = text.find(what, at + 1)) {
      ++n;
    }
    return n;
  };
  std::string out;
  for (absl::Time deadline = absl::Now() + absl::Seconds(30);
       absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(50))) {
    out = Vmctl({"console", "echo3", "--no-follow"}).out;
    if (count(out, "echo: ready") >= 2) break;
  }
  EXPECT_EQ(count(out, "echo: ready"), 2u) << out;
  EXPECT_EQ(Show("echo3").value("state", ""), "VM_STATE_RUNNING");
  ASSERT_EQ(Vmctl({"stop", "echo3"}).exit_code, 0);
}

TEST_F(RebootConsoleTest, PipedInputReachesTheGuestThroughVmctlConsole) {
  Create("echo1", Guest("echo"));
  ASSERT_EQ(Vmctl({"start", "echo1"}).exit_code, 0);
  WaitForConsole("echo1", "echo: ready");
  // Not a terminal: the bytes are forwarded as they are, and the end of the
  // input does not end the console; the VM powering off does.
  CommandResult console = ConsoleWithInput(
      "echo1", "printf 'hello world\\nsecond line\\rpoweroff\\n'");
  EXPECT_EQ(console.exit_code, 0) << console.err;
  EXPECT_THAT(console.out, HasSubstr("echo: ready"));
  EXPECT_THAT(console.out, HasSubstr("echo: hello world\r\n"));
  EXPECT_THAT(console.out, HasSubstr("echo: second line\r\n"));
  EXPECT_THAT(console.out, HasSubstr("echo: powering off"));
  nlohmann::json vm = WaitForState("echo1", "VM_STATE_OFF");
  EXPECT_EQ(vm.value("stateReason", ""), "guest powered off");
}

TEST_F(RebootConsoleTest, TerminalConsoleIsRawAndCtrlBracketDetaches) {
  if (access("/usr/bin/script", X_OK) != 0) {
    GTEST_SKIP() << "needs script(1) to give vmctl a terminal";
  }
  Create("tty1", Guest("echo"));
  ASSERT_EQ(Vmctl({"start", "tty1"}).exit_code, 0);
  WaitForConsole("tty1", "echo: ready");
  // script(1) runs vmctl on a pseudo-terminal fed from our pipe. In raw mode
  // the terminal neither echoes "typed" input nor turns Ctrl-] into anything
  // but a byte, which vmctl takes as the escape key.
  const std::string vmctl_command =
      absl::StrCat(Quote(Runfile("cli/vmctl")), " --socket ",
                   Quote(vmms_->socket_path()), " console tty1");
  const std::string command = absl::StrCat(
      "(sleep 1; printf 'typed\\r'; sleep 2; printf '\\035') | "
      "script -qfec ",
      Quote(vmctl_command), " /dev/null");
  absl::StatusOr<CommandResult> r =
      RunCommand({"/bin/sh", "-c", command}, {}, absl::Seconds(60));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->out << r->err;
  EXPECT_THAT(r->out, HasSubstr("escape character is ^]"));
  EXPECT_THAT(r->out, HasSubstr("echo: typed\r\n"));
  EXPECT_THAT(r->out, HasSubstr("detached from tty1"));
  // Raw mode: the terminal did not echo the input line itself.
  EXPECT_EQ(r->out.find("typed\r\n"
                        "echo"),
            std::string::npos)
      << r->out;
  // Detaching leaves the VM running.
  EXPECT_EQ(Show("tty1").value("state", ""), "VM_STATE_RUNNING");
  ASSERT_EQ(Vmctl({"stop", "tty1"}).exit_code, 0);
}

}  // namespace
}  // namespace hvtest
