// Save and restore through the public API, end to end (issue 14): vmctl ->
// vmms -> sandboxed vmwp on KVM (kvmbox where this host has no /dev/kvm).
// One vmms and one VM at a time, all in one test (each kvmbox job boots
// guests under emulation):
//  1. //guest:counter on 2 vCPUs is saved mid-run (Saved, files in vmms's
//     state directory); a restore into 4 vCPUs is refused naming the field and
//     leaves it Saved; vmms restarts; the restore into 2 vCPUs continues every
//     CPU's count from exactly the next value (no reboot, no skip).
//  2. //guest:enlightened keeps its VMBus channels: heartbeat OK again after
//     the restore without re-negotiation.
//  3. The worker killed while a save runs: either Crashed with no saved state,
//     or Saved and restorable; never a state that a restore would misuse.
#include <signal.h>

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
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

// Per CPU, the counts //guest:counter printed on complete lines (register
// and memory agree on each).
std::map<uint32_t, std::vector<uint64_t>> Counts(const std::string& out) {
  std::map<uint32_t, std::vector<uint64_t>> counts;
  std::vector<std::string> lines = absl::StrSplit(out, '\n');
  if (!lines.empty()) lines.pop_back();  // maybe incomplete
  for (std::string line : lines) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::vector<absl::string_view> w = absl::StrSplit(line, ' ');
    if (w.size() != 7 || w[0] != "counter:" || w[1] != "cpu") continue;
    uint32_t cpu;
    uint64_t reg, mem;
    if (!absl::SimpleAtoi(w[2], &cpu) || !absl::SimpleAtoi(w[4], &reg) ||
        !absl::SimpleAtoi(w[6], &mem)) {
      continue;
    }
    EXPECT_EQ(reg, mem) << line;
    counts[cpu].push_back(reg);
  }
  return counts;
}

std::string Heartbeat(const nlohmann::json& vm) {
  if (!vm.is_object() || !vm.contains("integration") ||
      !vm["integration"].is_object()) {
    return "";
  }
  return vm["integration"].value("heartbeat", "");
}

class SaveRestoreTest : public VmmsTest {
 protected:
  std::string Console(const std::string& name) {
    return Vmctl({"console", name, "--no-follow"}).out;
  }
  bool WaitForConsole(const std::string& name, const std::string& text,
                      size_t from = 0,
                      absl::Duration timeout = absl::Seconds(30)) {
    const absl::Time deadline = absl::Now() + kvmbox::Scaled(timeout);
    while (absl::Now() < deadline) {
      if (Console(name).find(text, from) != std::string::npos) return true;
      absl::SleepFor(absl::Milliseconds(200));
    }
    return false;
  }
  bool WaitForHeartbeatOk(const std::string& name, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + kvmbox::Scaled(timeout);
    while (absl::Now() < deadline) {
      if (Heartbeat(Show(name)) == "HEARTBEAT_OK") return true;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }
  // `vmctl save NAME`, timed.
  CommandResult Save(const std::string& name, absl::Duration* took = nullptr) {
    const absl::Time start = absl::Now();
    CommandResult r = Vmctl({"save", name});
    if (took != nullptr) *took = absl::Now() - start;
    return r;
  }
};

TEST_F(SaveRestoreTest, CounterEnlightenedAndKilledSave) {
  const absl::Time test_start = absl::Now();
  // ---- 1. The counter.
  ASSERT_EQ(Vmctl({"create", "count", "--kernel", Guest("counter"), "--cpus",
                   "2", "--memory", "64", "--cmdline", "delay=200000"})
                .exit_code,
            0);
  CommandResult start = Vmctl({"start", "count"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  ASSERT_TRUE(WaitForConsole("count", "cpu 1 reg 3 "))
      << Console("count") << vmms_->Log();
  absl::Duration save_took;
  CommandResult saved = Save("count", &save_took);
  ASSERT_EQ(saved.exit_code, 0) << saved.err << vmms_->Log();
  std::cout << "vmctl save (counter, 2 vCPUs, 64 MiB): "
            << absl::FormatDuration(save_took) << std::endl;
  nlohmann::json vm = Show("count");
  EXPECT_EQ(vm.value("state", ""), "VM_STATE_SAVED") << vm.dump();
  ASSERT_TRUE(vm.contains("savedState")) << vm.dump();
  const std::string state_file = vm["savedState"].value("stateFile", "");
  EXPECT_EQ(::access(state_file.c_str(), R_OK), 0) << state_file;
  const std::string before_console = Console("count");
  const auto before = Counts(before_console);
  ASSERT_EQ(before.size(), 2u) << before_console;

  // A changed configuration is refused naming the field; the VM stays Saved.
  ASSERT_EQ(Vmctl({"update", "count", "--cpus", "4"}).exit_code, 0);
  CommandResult refused = Vmctl({"start", "count"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("vcpus: the saved VM had 2"));
  vm = WaitForState("count", "VM_STATE_SAVED");
  EXPECT_THAT(vm.value("stateReason", ""), HasSubstr("restore failed"));
  EXPECT_EQ(::access(state_file.c_str(), R_OK), 0) << "saved state lost";
  ASSERT_EQ(Vmctl({"update", "count", "--cpus", "2"}).exit_code, 0);

  // vmms restarts between the save and the restore.
  ASSERT_TRUE(vmms_->Terminate().ok());
  ASSERT_TRUE(vmms_->Start().ok());
  EXPECT_EQ(Show("count").value("state", ""), "VM_STATE_SAVED");

  const absl::Time restore_start = absl::Now();
  start = Vmctl({"start", "count"});
  ASSERT_EQ(start.exit_code, 0) << start.err << vmms_->Log();
  std::cout << "vmctl start (restore, counter): "
            << absl::FormatDuration(absl::Now() - restore_start) << std::endl;
  vm = Show("count");
  EXPECT_EQ(vm.value("stateReason", ""), "restored from its saved state");
  for (const auto& [cpu, values] : before) {
    ASSERT_TRUE(WaitForConsole(
        "count", absl::StrCat("cpu ", cpu, " reg ", values.back() + 3, " ")))
        << "cpu " << cpu << " did not go on: " << Console("count");
  }
  ASSERT_EQ(Vmctl({"stop", "count"}).exit_code, 0);
  const std::string console = Console("count");
  EXPECT_EQ(console.find("CPUs counting"), console.rfind("CPUs counting"))
      << "the guest booted again";
  for (const auto& [cpu, values] : Counts(console)) {
    for (size_t i = 0; i < values.size(); ++i) {
      ASSERT_EQ(values[i], i + 1)
          << "cpu " << cpu << ": the count must go on without restart or skip";
    }
  }
  EXPECT_EQ(::access(state_file.c_str(), F_OK), -1)
      << "a restored VM's files are removed";

  // ---- 2. The enlightened guest keeps its channels.
  ASSERT_EQ(Vmctl({"create", "enl", "--kernel", Guest("enlightened"),
                   "--memory", "64"})
                .exit_code,
            0);
  ASSERT_EQ(Vmctl({"start", "enl"}).exit_code, 0);
  ASSERT_TRUE(WaitForHeartbeatOk("enl", absl::Seconds(20)))
      << Show("enl").dump();
  saved = Save("enl", &save_took);
  ASSERT_EQ(saved.exit_code, 0) << saved.err << vmms_->Log();
  std::cout << "vmctl save (enlightened, 1 vCPU, 64 MiB): "
            << absl::FormatDuration(save_took) << std::endl;
  const size_t enl_log = Console("enl").size();
  ASSERT_EQ(Vmctl({"start", "enl"}).exit_code, 0);
  const absl::Time enl_restored = absl::Now();
  EXPECT_TRUE(WaitForHeartbeatOk("enl", absl::Seconds(2)))
      << "no heartbeat OK within 2 s (scaled) of the restore: "
      << Show("enl").dump();
  std::cout << "heartbeat OK "
            << absl::FormatDuration(absl::Now() - enl_restored)
            << " after the restore" << std::endl;
  const std::string after = Console("enl").substr(enl_log);
  EXPECT_THAT(after, Not(HasSubstr("enlightened: start"))) << after;
  EXPECT_THAT(after, Not(HasSubstr("vmbus version"))) << after;
  ASSERT_EQ(Vmctl({"stop", "enl"}).exit_code, 0);

  // ---- 3. The worker killed during a save.
  ASSERT_EQ(Vmctl({"start", "count"}).exit_code, 0);
  ASSERT_TRUE(WaitForConsole("count", "cpu 0 reg 2 ", 0));
  // proto3 JSON prints int64 as a string.
  int64_t pid = 0;
  ASSERT_TRUE(absl::SimpleAtoi(Show("count").value("workerPid", "0"), &pid));
  ASSERT_GT(pid, 0);
  CommandResult killed_save;
  std::thread save([&] { killed_save = Save("count"); });
  // As soon as the save began (or at once if it is too quick to see).
  const absl::Time deadline = absl::Now() + kvmbox::Scaled(absl::Seconds(5));
  while (absl::Now() < deadline &&
         Show("count").value("state", "") != "VM_STATE_SAVING") {
  }
  ::kill(static_cast<pid_t>(pid), SIGKILL);
  save.join();
  vm = Show("count");
  const std::string state = vm.value("state", "");
  std::cout << "worker killed during save: vmctl save exit "
            << killed_save.exit_code << ", VM " << state << " ("
            << vm.value("stateReason", "") << ")" << std::endl;
  if (state == "VM_STATE_SAVED") {
    // The save completed before the kill: it must restore.
    ASSERT_EQ(Vmctl({"start", "count"}).exit_code, 0) << vmms_->Log();
    EXPECT_EQ(Show("count").value("stateReason", ""),
              "restored from its saved state");
    ASSERT_EQ(Vmctl({"stop", "count"}).exit_code, 0);
  } else {
    EXPECT_NE(killed_save.exit_code, 0);
    EXPECT_EQ(state, "VM_STATE_CRASHED") << vm.dump();
    EXPECT_FALSE(vm.contains("savedState")) << vm.dump();
    const std::string dir =
        vmms_->state_dir() + "/vms/" + vm.value("uuid", "") + "/saved";
    EXPECT_EQ(::access(dir.c_str(), F_OK), -1) << "leftover " << dir;
    // The next start is a boot, not a restore of anything half-written.
    ASSERT_EQ(Vmctl({"start", "count"}).exit_code, 0);
    EXPECT_EQ(Show("count").value("stateReason", ""), "worker ready");
    ASSERT_EQ(Vmctl({"stop", "count"}).exit_code, 0);
  }
  // Events: each step recorded.
  const std::string events = Vmctl({"events"}).out;
  EXPECT_THAT(events, HasSubstr("saving"));
  EXPECT_THAT(events, HasSubstr("restoring"));
  EXPECT_THAT(events, HasSubstr("restored from its saved state"));
  std::cout << "whole test: " << absl::FormatDuration(absl::Now() - test_start)
            << std::endl;
}

}  // namespace
}  // namespace hvtest
