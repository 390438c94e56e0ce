// Boots Debian's stock cloud kernel under vmwp, through vmms and vmctl, once as
// a bzImage and once as vmlinux through the PVH entry, each with a busybox
// initramfs whose /init prints a marker and powers off. The kernel is fetched
// with apt-get (cached) and never installed.
//
// On hosts whose KVM runs the whole boot, the test requires the marker and a
// clean power-off. On this project's machines (software-assisted KVM, see
// host-facts.md) the boot stops early; the test then requires the first part
// (banner, our command line, our e820 map), records how far the boot got, and
// requires that the VM ended Crashed with the instruction bytes, or at worst
// that it kept running and was stoppable: a worker never hangs.
#include <unistd.h>

#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/process.h"
#include "tests/harness/vmms_instance.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;

constexpr char kMarker[] = "HVSTACK-INITRAMFS-OK";

struct BootCase {
  std::string name;      // VM name and test parameter name
  std::string image;     // file under the kernel directory
  absl::Duration limit;  // how long the boot may take here before we stop it
};

// The e820 lines in Linux's own format, in order, from any log.
std::vector<std::string> E820Lines(const std::string& log) {
  static const std::regex kLine(
      R"(BIOS-e820: \[mem 0x[0-9a-f]{16}-0x[0-9a-f]{16}\] [A-Za-z ]+)");
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    const std::string owned(absl::StripTrailingAsciiWhitespace(line));
    std::smatch m;
    if (std::regex_search(owned, m, kLine)) {
      lines.push_back(std::string(absl::StripTrailingAsciiWhitespace(m.str())));
    }
  }
  return lines;
}

std::string LastLines(const std::string& text, int n) {
  std::vector<absl::string_view> lines =
      absl::StrSplit(text, '\n', absl::SkipWhitespace());
  std::string out;
  for (size_t i = lines.size() > static_cast<size_t>(n) ? lines.size() - n : 0;
       i < lines.size(); ++i) {
    absl::StrAppend(&out, lines[i], "\n");
  }
  return out;
}

class LinuxBootTest : public ::testing::TestWithParam<BootCase> {
 protected:
  static void SetUpTestSuite() {
    if (access("/dev/kvm", R_OK | W_OK) != 0) return;
    kernel_dir_ = new TempDir();
    const std::string scripts = Runfile("tests/linux");
    absl::StatusOr<CommandResult> fetch = RunCommand(
        {scripts + "/fetch_kernel.sh", kernel_dir_->path() + "/kernel"}, {},
        absl::Minutes(10));
    if (!fetch.ok() || fetch->exit_code != 0) {
      fetch_error_ = absl::StrCat(
          "fetch_kernel.sh failed: ",
          fetch.ok() ? fetch->err : std::string(fetch.status().message()));
      return;
    }
    kernel_release_ = std::string(absl::StripAsciiWhitespace(fetch->out));
    // Debian builds VMBus as modules (CONFIG_HYPERV=m): /init insmods them
    // before the marker, so an enlightened boot that gets that far shows
    // what hv_vmbus and hv_utils make of our VMBus.
    const std::string modules = kernel_dir_->path() + "/kernel/modules";
    absl::StatusOr<CommandResult> initramfs =
        RunCommand({scripts + "/make_initramfs.sh",
                    kernel_dir_->path() + "/initrd.gz", kMarker},
                   {absl::StrCat("HVSTACK_INITRAMFS_MODULES=", modules,
                                 "/hv_vmbus.ko ", modules, "/hv_utils.ko")},
                   absl::Minutes(2));
    if (!initramfs.ok() || initramfs->exit_code != 0) {
      fetch_error_ = absl::StrCat(
          "make_initramfs.sh failed: ",
          initramfs.ok() ? initramfs->err
                         : std::string(initramfs.status().message()));
    }
  }

  static void TearDownTestSuite() {
    delete kernel_dir_;
    kernel_dir_ = nullptr;
  }

  void SetUp() override {
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
      GTEST_SKIP()
          << "needs read/write access to /dev/kvm, which this host lacks";
    }
    ASSERT_TRUE(fetch_error_.empty()) << fetch_error_;
    vmms_ = std::make_unique<VmmsInstance>(state_.path());
    ASSERT_TRUE(vmms_->Start().ok()) << vmms_->Log();
  }

  nlohmann::json Show(const std::string& name) {
    absl::StatusOr<CommandResult> r = vmms_->Vmctl({"--json", "show", name});
    if (!r.ok() || r->exit_code != 0) return nlohmann::json();
    return nlohmann::json::parse(r->out, nullptr, false);
  }

  std::string Console(const std::string& name) {
    absl::StatusOr<CommandResult> r =
        vmms_->Vmctl({"console", name, "--no-follow"});
    return r.ok() ? r->out : "";
  }

  static TempDir* kernel_dir_;
  static std::string kernel_release_;
  static std::string fetch_error_;
  TempDir state_;
  std::unique_ptr<VmmsInstance> vmms_;
};

TempDir* LinuxBootTest::kernel_dir_ = nullptr;
std::string LinuxBootTest::kernel_release_;
std::string LinuxBootTest::fetch_error_;

TEST_P(LinuxBootTest, BootsAsFarAsTheHostAllows) {
  const BootCase& c = GetParam();
  const std::string kernel = kernel_dir_->path() + "/kernel/" + c.image;
  const std::string cmdline = absl::StrCat(
      "console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=0 noxsave "
      "hvstack.case=",
      c.name);
  absl::StatusOr<CommandResult> create =
      vmms_->Vmctl({"create", c.name, "--kernel", kernel, "--initrd",
                    kernel_dir_->path() + "/initrd.gz", "--memory", "512",
                    "--cpus", "2", "--cmdline", cmdline});
  ASSERT_TRUE(create.ok());
  ASSERT_EQ(create->exit_code, 0) << create->err;
  const absl::Time started = absl::Now();
  absl::StatusOr<CommandResult> start = vmms_->Vmctl({"start", c.name});
  ASSERT_TRUE(start.ok());
  ASSERT_EQ(start->exit_code, 0) << start->err;

  // Watch until the VM leaves Running, the marker shows, or the limit passes.
  nlohmann::json vm;
  std::string console;
  bool stopped_by_test = false;
  for (;;) {
    vm = Show(c.name);
    const std::string state = vm.value("state", "");
    if (state != "VM_STATE_RUNNING" && state != "VM_STATE_STARTING") break;
    console = Console(c.name);
    if (absl::StrContains(console, "Kernel panic")) break;
    if (absl::Now() - started > c.limit) {
      stopped_by_test = true;
      break;
    }
    absl::SleepFor(absl::Seconds(1));
  }
  const absl::Duration elapsed = absl::Now() - started;
  if (vm.value("state", "") == "VM_STATE_RUNNING") {
    absl::StatusOr<CommandResult> stop = vmms_->Vmctl({"stop", c.name});
    ASSERT_TRUE(stop.ok());
    EXPECT_EQ(stop->exit_code, 0)
        << "a running worker must be stoppable: " << stop->err;
    vm = Show(c.name);
  }
  console = Console(c.name);
  const std::string reason = vm.value("stateReason", "");
  const std::string worker_log = ReadFileOrEmpty(absl::StrCat(
      state_.path(), "/vms/", vm.value("uuid", ""), "/worker.log"));

  // How far it got, for the record (shown in the test log and test.xml).
  const std::string last = LastLines(console, 8);
  RecordProperty("kernel_release", kernel_release_);
  RecordProperty("elapsed_seconds",
                 std::to_string(absl::ToDoubleSeconds(elapsed)));
  RecordProperty("final_state", vm.value("state", ""));
  RecordProperty("final_reason", reason);
  std::printf(
      "[%s] kernel %s: %.1f s, final state %s (%s)%s\nlast console "
      "lines:\n%s\n",
      c.name.c_str(), kernel_release_.c_str(), absl::ToDoubleSeconds(elapsed),
      vm.value("state", "").c_str(), reason.c_str(),
      stopped_by_test ? ", stopped by the test at its time limit" : "",
      last.c_str());

  // Every VM is enlightened: Linux must pick Hyper-V from our CPUID (KVM's
  // leaves are gone), and say so as soon as it gets that far.
  std::string hyperv_lines;
  for (absl::string_view line : absl::StrSplit(console, '\n')) {
    if (absl::StrContains(line, "Hyper-V") || absl::StrContains(line, "hv_") ||
        absl::StrContains(line, "vmbus") ||
        absl::StrContains(line, "Hypervisor detected") ||
        absl::StrContains(line, "HVSTACK-INITRAMFS")) {
      absl::StrAppend(&hyperv_lines, line, "\n");
    }
  }
  // What the guest used of the synthetic interface (MSRs, hypercalls), as the
  // worker logged it when the VM ended.
  for (absl::string_view line : absl::StrSplit(worker_log, '\n')) {
    if (absl::StrContains(line, "hyperv: ") ||
        absl::StrContains(line, "vmbus:"))
      absl::StrAppend(&hyperv_lines, "worker: ", line, "\n");
  }
  std::printf("[%s] Hyper-V / VMBus lines:\n%s\n", c.name.c_str(),
              hyperv_lines.c_str());
  RecordProperty("hyperv_lines", hyperv_lines);
  if (absl::StrContains(console, "Hypervisor detected")) {
    EXPECT_THAT(console, HasSubstr("Hypervisor detected: Microsoft Hyper-V"));
  }
  EXPECT_THAT(console, HasSubstr("Linux version"));
  EXPECT_THAT(console, HasSubstr(absl::StrCat("Command line: ", cmdline)));
  const std::vector<std::string> guest_e820 = E820Lines(console);
  const std::vector<std::string> worker_e820 = E820Lines(worker_log);
  EXPECT_FALSE(worker_e820.empty()) << "the worker logs the e820 map it built";
  EXPECT_EQ(guest_e820, worker_e820)
      << "the guest's e820 map differs from the one vmwp built";

  if (absl::StrContains(console, kMarker)) {
    EXPECT_EQ(vm.value("state", ""), "VM_STATE_OFF");
    EXPECT_EQ(reason, "guest powered off");
  } else if (!stopped_by_test) {
    // The host stopped the boot: the VM must say where and why.
    EXPECT_EQ(vm.value("state", ""), "VM_STATE_CRASHED") << reason;
    EXPECT_THAT(reason, HasSubstr("bytes")) << reason;
  }
}

INSTANTIATE_TEST_SUITE_P(
    StockDebianKernel, LinuxBootTest,
    ::testing::Values(BootCase{"bzimage", "vmlinuz", absl::Minutes(5)},
                      BootCase{"pvh", "vmlinux", absl::Minutes(3)}),
    [](const ::testing::TestParamInfo<BootCase>& info) {
      return info.param.name;
    });

}  // namespace
}  // namespace hvtest
