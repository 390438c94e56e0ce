// End to end through the real binaries: vmctl -> vmms (gRPC, SQLite) -> vmwp ->
// vid -> KVM, running guests that the build produces.
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
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
using ::testing::Not;

// vmctl's documented exit codes (cli/README.md).
constexpr int kExitNotFound = 2;
constexpr int kExitConflict = 3;
constexpr int kExitInvalidArgument = 4;

class LifecycleTest : public VmmsTest {
 protected:
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
};

TEST_F(LifecycleTest, HelloGuestPrintsCommandLineAndPowersOff) {
  Create("hello1", Guest("hello"), "console=ttyS0 marker=e2e-42");
  CommandResult start = Vmctl({"start", "hello1"});
  ASSERT_EQ(start.exit_code, 0) << start.err;

  nlohmann::json vm = WaitForState("hello1", "VM_STATE_OFF");
  EXPECT_EQ(vm.value("stateReason", ""), "guest powered off");

  CommandResult console = Vmctl({"console", "hello1", "--no-follow"});
  EXPECT_EQ(console.exit_code, 0) << console.err;
  EXPECT_THAT(console.out, HasSubstr("hvstack hello guest"));
  EXPECT_THAT(console.out, HasSubstr("console=ttyS0 marker=e2e-42"));

  CommandResult list = Vmctl({"--json", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  nlohmann::json parsed = nlohmann::json::parse(list.out, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded()) << "not JSON: " << list.out;
  ASSERT_TRUE(parsed.contains("vms"));
  ASSERT_EQ(parsed["vms"].size(), 1u);
  EXPECT_EQ(parsed["vms"][0]["name"], "hello1");
  EXPECT_EQ(parsed["vms"][0]["state"], "VM_STATE_OFF");

  // The table form names it too.
  CommandResult table = Vmctl({"list"});
  EXPECT_THAT(table.out, HasSubstr("hello1"));
}

TEST_F(LifecycleTest, HelloGuestCanStartAgainAfterPowerOff) {
  Create("again", Guest("hello"), "run=twice");
  for (int i = 0; i < 2; ++i) {
    CommandResult start = Vmctl({"start", "again"});
    ASSERT_EQ(start.exit_code, 0) << start.err;
    WaitForState("again", "VM_STATE_OFF");
  }
  CommandResult console = Vmctl({"console", "again", "--no-follow"});
  EXPECT_THAT(console.out, HasSubstr("run=twice"));
}

TEST_F(LifecycleTest, DefinitionSurvivesVmmsSigkill) {
  Create("durable", Guest("hello"), "keep=me");
  vmms_->Kill();
  vmms_ = std::make_unique<VmmsInstance>(dir_.path());
  ASSERT_TRUE(vmms_->Start().ok());
  nlohmann::json vm = Show("durable");
  EXPECT_EQ(vm["name"], "durable");
  EXPECT_EQ(vm["config"]["cmdline"], "keep=me");
  EXPECT_EQ(vm["config"]["kernelPath"], Guest("hello"));
  EXPECT_EQ(vm["state"], "VM_STATE_OFF");
}

TEST_F(LifecycleTest, SpinningGuestRunsUntilHardStop) {
  Create("spin1", Guest("spin"));
  CommandResult start = Vmctl({"start", "spin1"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  nlohmann::json running = Show("spin1");
  EXPECT_EQ(running["state"], "VM_STATE_RUNNING");
  EXPECT_NE(running.value("workerPid", "0"), "0");

  CommandResult stop = Vmctl({"stop", "spin1"});
  ASSERT_EQ(stop.exit_code, 0) << stop.err;
  nlohmann::json vm = WaitForState("spin1", "VM_STATE_OFF");
  EXPECT_THAT(vm.value("stateReason", ""), HasSubstr("stopped by user"));
  EXPECT_THAT(Vmctl({"console", "spin1", "--no-follow"}).out,
              HasSubstr("spin"));
}

TEST_F(LifecycleTest, UnhandledPortsAndMmioReadAllOnesAndGuestKeepsRunning) {
  Create("probe", Guest("unhandled_io"));
  CommandResult start = Vmctl({"start", "probe"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  nlohmann::json vm = WaitForState("probe", "VM_STATE_OFF");
  EXPECT_EQ(vm.value("stateReason", ""), "guest powered off");
  const std::string console = Vmctl({"console", "probe", "--no-follow"}).out;
  EXPECT_THAT(console, HasSubstr("ffffffff")) << console;
  // The worker's log notes the unhandled accesses.
  const std::string worker_log = ReadFileOrEmpty(
      absl::StrCat(dir_.path(), "/vms/", vm.value("uuid", ""), "/worker.log"));
  EXPECT_THAT(worker_log, HasSubstr("unhandled port read")) << worker_log;
  EXPECT_THAT(worker_log, HasSubstr("unhandled MMIO read")) << worker_log;
}

TEST_F(LifecycleTest, UnemulatableInstructionEndsCrashedWithInstructionBytes) {
  Create("crashy", Guest("bad_instruction"));
  CommandResult start = Vmctl({"start", "crashy"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  nlohmann::json vm = WaitForState("crashy", "VM_STATE_CRASHED");
  const std::string reason = vm.value("stateReason", "");
  EXPECT_THAT(reason, HasSubstr("bytes")) << reason;
  EXPECT_THAT(vmms_->Log(), HasSubstr("bytes"));
}

TEST_F(LifecycleTest, UnknownVmIsNotFoundNamingIt) {
  for (const char* verb : {"show", "start", "stop", "delete", "console"}) {
    CommandResult r = Vmctl({verb, "no-such-vm"});
    EXPECT_EQ(r.exit_code, kExitNotFound) << verb << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("NOT_FOUND")) << verb;
    EXPECT_THAT(r.err, HasSubstr("no-such-vm")) << verb;
  }
}

TEST_F(LifecycleTest, DuplicateNameIsAlreadyExists) {
  Create("twin", Guest("hello"));
  CommandResult r = Vmctl({"create", "twin", "--kernel", Guest("hello")});
  EXPECT_EQ(r.exit_code, kExitConflict);
  EXPECT_THAT(r.err, HasSubstr("ALREADY_EXISTS"));
  EXPECT_THAT(r.err, HasSubstr("twin"));
}

TEST_F(LifecycleTest, BadKernelsAreInvalidArgumentNamingPathAndProblem) {
  const std::string missing = dir_.path() + "/no-such-kernel";
  CommandResult r = Vmctl({"create", "k1", "--kernel", missing});
  EXPECT_EQ(r.exit_code, kExitInvalidArgument);
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(r.err, HasSubstr(missing));

  const std::string text = dir_.path() + "/notes.txt";
  std::ofstream(text) << "this is not a kernel\n";
  r = Vmctl({"create", "k2", "--kernel", text});
  EXPECT_EQ(r.exit_code, kExitInvalidArgument);
  EXPECT_THAT(r.err, HasSubstr(text));
  EXPECT_THAT(r.err, HasSubstr("ELF"));

  // A real ELF, but not an x86-64 executable kernel: a 64-bit shared object is
  // ET_DYN.
  const std::string elf32 = dir_.path() + "/elf32";
  {
    std::ofstream out(elf32, std::ios::binary);
    const unsigned char header[64] = {0x7f, 'E', 'L', 'F', 1 /*ELFCLASS32*/,
                                      1,    1};
    out.write(reinterpret_cast<const char*>(header), sizeof(header));
  }
  r = Vmctl({"create", "k3", "--kernel", elf32});
  EXPECT_EQ(r.exit_code, kExitInvalidArgument);
  EXPECT_THAT(r.err, HasSubstr(elf32));

  EXPECT_EQ(Vmctl({"list"}).out.find("k1"), std::string::npos);
}

TEST_F(LifecycleTest, OutOfBoundsResourcesStateTheBounds) {
  CommandResult r = Vmctl(
      {"create", "big", "--kernel", Guest("hello"), "--memory", "999999999"});
  EXPECT_EQ(r.exit_code, kExitInvalidArgument);
  EXPECT_THAT(r.err, HasSubstr("memory"));
  EXPECT_THAT(r.err, HasSubstr("16"));

  r = Vmctl({"create", "many", "--kernel", Guest("hello"), "--cpus", "0"});
  EXPECT_EQ(r.exit_code, kExitInvalidArgument);
  EXPECT_THAT(r.err, HasSubstr("vcpus"));

  r = Vmctl({"create", "Bad_Name", "--kernel", Guest("hello")});
  EXPECT_EQ(r.exit_code, kExitInvalidArgument);
  EXPECT_THAT(r.err, HasSubstr("Bad_Name"));
}

TEST_F(LifecycleTest, DeleteRemovesDefinition) {
  Create("gone", Guest("hello"));
  CommandResult r = Vmctl({"delete", "gone"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Vmctl({"show", "gone"}).exit_code, kExitNotFound);
}

// /dev/kvm missing or unusable: vmms is started with another device path.
TEST(KvmDeviceTest, MissingOrUnusableKvmIsFailedPrecondition) {
  for (const std::string device : {"/nonexistent/kvm", "/dev/null"}) {
    TempDir dir;
    VmmsInstance vmms(dir.path(), {"--kvm-device", device});
    ASSERT_TRUE(vmms.Start().ok()) << vmms.Log();
    absl::StatusOr<CommandResult> r = vmms.Vmctl(
        {"create", "nokvm", "--kernel", Guest("hello"), "--memory", "64"});
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->exit_code, 0) << r->err;
    r = vmms.Vmctl({"start", "nokvm"});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->exit_code, kExitConflict) << device << ": " << r->err;
    EXPECT_THAT(r->err, HasSubstr("FAILED_PRECONDITION")) << device;
    EXPECT_THAT(r->err, HasSubstr(device)) << device;
    r = vmms.Vmctl({"--json", "show", "nokvm"});
    EXPECT_THAT(r->out, HasSubstr("VM_STATE_OFF")) << device;
  }
}

}  // namespace
}  // namespace hvtest
