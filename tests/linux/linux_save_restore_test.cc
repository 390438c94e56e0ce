// Issue 14: the Linux test kernel, saved in the middle of its boot and
// restored, continues booting. One boot through vmms -> vmwp: `quiet
// loglevel=6` (the console shows the kernel's notices, its banner first, not
// its whole log: every console byte is two exits of a nested guest, and the
// whole log took minutes in kvmbox and starved RCU), saved right after a
// notice of the middle of the boot (SaveVm through the API, what `vmctl save`
// calls: a vmctl process takes seconds to start in kvmbox and the boot would be
// over), Saved, then `vmctl start` (a fresh worker restores it). The boot goes
// on: no second banner, /init runs and copies the kernel's own log of the boot
// (dmesg, the lines asserted on) to the console, whose timestamps never go
// back, with hv_vmbus and hv_utils coming up, then the initramfs marker and the
// power-off an uninterrupted boot reaches.
//
// No NIC (netvsp cannot be saved yet) and no disk: the VM has VMBus with the
// ICs only.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "tests/kvmbox/kvmbox.h"
#include "tests/linux/test_kernel.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kName[] = "saved";
constexpr char kMarker[] = "HVSTACK-SAVE-RESTORE-INIT";

// Notices the test kernel prints on our platform once its core is up, before
// VMBus and /init (with `quiet loglevel=6`).
constexpr char kMidBoot[] =
    "PCI: Fatal: No config space access|SCSI subsystem initialized|PCI: "
    "System does not support PCI";

// The kernel's lines /init copies from its log (dmesg) to the console.
constexpr char kBootLines[] =
    "smp: Brought up|hv_vmbus: Vmbus version|IC version|Freeing unused "
    "kernel|Run /init";

const bool kInitrd = PrepareOnHost("initrd", [](const std::string& dir) {
  InitramfsOptions init;
  init.run = {
      "echo HVSTACK-INIT-START",
      // hv_utils negotiates its ICs as /init starts (bounded: 120 guest s).
      "n=0; while [ $(dmesg | grep -c 'IC version') -lt 3 ] && "
      "[ $n -lt 120 ]; do sleep 1; n=$((n+1)); done",
      absl::StrCat("dmesg | grep -E '", kBootLines, "'"),
  };
  return MakeInitramfs(dir + "/initrd.cpio", kMarker, init);
});

absl::Duration GuestWait(absl::Duration d) { return kvmbox::Scaled(d); }

// The kernel timestamps of `console`'s lines, in order.
std::vector<double> Timestamps(const std::string& console) {
  std::vector<double> out;
  for (absl::string_view line : absl::StrSplit(console, '\n')) {
    if (std::optional<double> t = GuestSeconds(line)) out.push_back(*t);
  }
  return out;
}

TEST(LinuxSaveRestoreTest, SavedMidBootContinuesBootingAfterTheRestore) {
  if (access("/dev/kvm", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "needs read/write access to /dev/kvm, which this host "
                    "lacks (see the kvmbox line above)";
  }
  if (!HostRunsGuestUserspace()) GTEST_SKIP() << NoGuestUserspaceReason();
  absl::StatusOr<std::string> prepared = PreparedOnHost("initrd");
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  absl::StatusOr<std::unique_ptr<LinuxVm>> booted =
      LinuxVm::Boot({.name = kName,
                     .initrd = *prepared + "/initrd.cpio",
                     .extra_cmdline = "loglevel=6",
                     .cpus = 1});
  ASSERT_TRUE(booted.ok()) << booted.status();
  LinuxVm& vm = **booted;
  std::printf("command line: %s\n", vm.cmdline().c_str());

  // The banner (a notice, the first line), then one of the notices Linux
  // prints once SMP, timekeeping and ACPI are up, before hv_vmbus and /init.
  absl::StatusOr<absl::Duration> banner =
      vm.WaitForConsole("Linux version 6.1", GuestWait(absl::Minutes(3)));
  ASSERT_TRUE(banner.ok()) << banner.status();
  vm.Mark("kernel banner", *banner);
  std::string mid_boot;
  absl::StatusOr<absl::Duration> mid =
      vm.WaitForConsoleRegex(kMidBoot, GuestWait(absl::Minutes(3)), &mid_boot);
  ASSERT_TRUE(mid.ok()) << mid.status();
  vm.Mark("mid-boot line", *mid);
  {
    hvstack::v1::SaveVmRequest request;
    request.set_name(kName);
    hvstack::v1::Vm saved;
    const grpc::Status s = vm.Api().SaveVm(
        LinuxVm::Context(GuestWait(absl::Seconds(60))).get(), request, &saved);
    ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << vm.ServiceLog();
    EXPECT_EQ(saved.state(), hvstack::v1::VM_STATE_SAVED);
  }
  vm.Mark("SaveVm returned", vm.Elapsed());
  const absl::Time saved_at = absl::Now();
  absl::StatusOr<absl::Duration> saved =
      vm.WaitForState("VM_STATE_SAVED", GuestWait(absl::Seconds(30)));
  ASSERT_TRUE(saved.ok()) << saved.status();
  // The old worker's console has ended: what it printed is all there.
  const absl::Time wait_end = absl::Now() + GuestWait(absl::Seconds(30));
  std::string before = vm.Console();
  while (absl::Now() < wait_end) {
    absl::SleepFor(absl::Milliseconds(500));
    const std::string now = vm.Console();
    if (now == before) break;
    before = now;
  }
  ASSERT_THAT(before, Not(HasSubstr("HVSTACK-INIT-START")))
      << "saved too late: the boot had reached /init";
  const std::vector<double> stamps_before = Timestamps(before);
  ASSERT_FALSE(stamps_before.empty()) << before;
  std::printf(
      "saved after %zu kernel line(s) on the console, the last at %.6f s\n",
      stamps_before.size(), stamps_before.back());

  absl::StatusOr<CommandResult> start =
      vm.Vmctl({"start", kName}, GuestWait(absl::Seconds(60)));
  ASSERT_TRUE(start.ok()) << start.status();
  ASSERT_EQ(start->exit_code, 0) << start->out << start->err << "\n"
                                 << vm.ServiceLog();
  const absl::Duration saved_for = absl::Now() - saved_at;
  vm.Mark("vmctl start (restore) returned", vm.Elapsed());
  ASSERT_TRUE(vm.FollowConsoleAgain(GuestWait(absl::Seconds(30))).ok());
  EXPECT_THAT(vm.ServiceLog(), HasSubstr("restore of VM saved"));

  absl::StatusOr<absl::Duration> init =
      vm.WaitForConsole(kMarker, GuestWait(absl::Minutes(5)));
  ASSERT_TRUE(init.ok()) << init.status() << "\n" << vm.ServiceLog();
  vm.Mark("initramfs marker (after the restore)", *init);
  absl::StatusOr<absl::Duration> off =
      vm.WaitForState("VM_STATE_OFF", GuestWait(absl::Minutes(1)));
  ASSERT_TRUE(off.ok()) << off.status();
  vm.Mark("Off (guest power-off)", *off);

  const std::string console = vm.Console();
  ASSERT_GE(console.size(), before.size());
  ASSERT_EQ(console.substr(0, before.size()), before);
  const std::string after = console.substr(before.size());
  // Went on, did not start over: one banner, /init ran once.
  size_t banners = 0;
  for (size_t at = console.find("Linux version"); at != std::string::npos;
       at = console.find("Linux version", at + 1)) {
    ++banners;
  }
  EXPECT_EQ(banners, 1u) << "the kernel booted again";
  EXPECT_THAT(after, HasSubstr("HVSTACK-INIT-START"));
  // The kernel's own log of the whole boot, copied by /init after the
  // restore: the points an uninterrupted boot reaches (linux_vmbus_test's),
  // in order of time.
  for (const char* line :
       {"smp: Brought up 1 node, 1 CPU", "hv_vmbus: Vmbus version:5.3",
        "hv_utils: Heartbeat IC version 3.0",
        "hv_utils: Shutdown IC version 3.2",
        "hv_utils: TimeSync IC version 4.0", "Run /init as init process"}) {
    EXPECT_THAT(after, HasSubstr(line));
  }
  const std::vector<double> log = Timestamps(after);
  ASSERT_FALSE(log.empty()) << after;
  for (size_t i = 1; i < log.size(); ++i) {
    EXPECT_GE(log[i], log[i - 1]) << "the boot's log goes back in time";
  }
  EXPECT_GE(log.back(), stamps_before.back());
  double gap = 0;
  for (size_t i = 1; i < log.size(); ++i)
    gap = std::max(gap, log[i] - log[i - 1]);
  std::printf(
      "the VM was Saved for %.1f s of wall time; the kernel's log of the boot "
      "(after the restore): %zu lines from %.6f s to %.6f s, its largest gap "
      "%.3f s\n",
      absl::ToDoubleSeconds(saved_for), log.size(), log.front(), log.back(),
      gap);
  std::printf("timeline (seconds since StartVm):\n%s", vm.Timeline().c_str());
  std::printf("console:\n%s\n", console.c_str());
}

}  // namespace
}  // namespace hvtest
