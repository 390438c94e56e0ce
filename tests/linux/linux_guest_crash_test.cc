// Linux's own panic report, judged by vmms: the test kernel booted without a
// root device panics ("VFS: Unable to mount root fs"), and Linux's hv_vmbus
// reports it through the Hyper-V crash MSRs with the tail of its kernel log
// (hv_kmsg_dump). Per the VM's on_guest_crash policy the VM ends Crashed with
// the panic line as its reason, or Paused (preserve) until it is stopped; the
// report is in `vmctl show` and the event log either way.
#include <unistd.h>

#include <iostream>
#include <string>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/kvmbox/kvmbox.h"
#include "tests/linux/test_kernel.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;

constexpr char kPanic[] =
    "Kernel panic - not syncing: VFS: Unable to mount root fs on "
    "unknown-block(0,0)";

// Boots the test kernel with no initramfs and a root device that does not
// exist, under `policy`.
absl::StatusOr<std::unique_ptr<LinuxVm>> BootToPanic(
    const std::string& name, const std::string& policy) {
  if (::access("/dev/kvm", R_OK | W_OK) != 0) {
    return absl::FailedPreconditionError("needs /dev/kvm");
  }
  return LinuxVm::Boot({.name = name,
                        // quiet: the console is an emulated UART, a VM exit
                        // per byte (minutes of boot log in kvmbox); the
                        // panic and hv_kmsg_dump's copy of the log are
                        // unaffected.
                        .extra_cmdline = "root=/dev/sdz1 quiet",
                        .create_args = {"--on-guest-crash", policy}});
}

void ExpectReportShown(LinuxVm& vm, const nlohmann::json& shown) {
  ASSERT_TRUE(shown.contains("lastGuestCrash")) << shown.dump();
  EXPECT_EQ(shown["lastGuestCrash"].value("summary", ""), kPanic);
  // The tail of Linux's log, as hv_kmsg_dump wrote it.
  EXPECT_THAT(shown["lastGuestCrash"].value("message", ""),
              HasSubstr("VFS: Cannot open root device"));
  absl::StatusOr<CommandResult> show = vm.Vmctl({"show", vm.name()});
  ASSERT_TRUE(show.ok());
  EXPECT_THAT(show->out, HasSubstr(std::string("vp0: ") + kPanic));
  absl::StatusOr<CommandResult> events = vm.Vmctl({"events"});
  ASSERT_TRUE(events.ok());
  EXPECT_THAT(events->out,
              HasSubstr(std::string("guest crashed on vp0: ") + kPanic));
}

TEST(LinuxGuestCrashTest, PanicEndsTheVmCrashedWithThePanicLine) {
  absl::StatusOr<std::unique_ptr<LinuxVm>> vm =
      BootToPanic("panic-stop", "stop");
  if (absl::IsFailedPrecondition(vm.status())) GTEST_SKIP() << vm.status();
  ASSERT_TRUE(vm.ok()) << vm.status();
  absl::StatusOr<absl::Duration> crashed =
      (*vm)->WaitForState("VM_STATE_CRASHED", kvmbox::Scaled(absl::Minutes(5)));
  ASSERT_TRUE(crashed.ok()) << crashed.status() << "\n" << (*vm)->Console();
  std::cout << "StartVm -> Crashed (Linux panic reported): " << *crashed
            << "\n";
  nlohmann::json shown = (*vm)->Show();
  EXPECT_EQ(shown.value("stateReason", ""),
            std::string("guest crashed: ") + kPanic);
  ExpectReportShown(**vm, shown);
}

TEST(LinuxGuestCrashTest, PanicPreservedIsPausedUntilStopped) {
  absl::StatusOr<std::unique_ptr<LinuxVm>> vm =
      BootToPanic("panic-keep", "preserve");
  if (absl::IsFailedPrecondition(vm.status())) GTEST_SKIP() << vm.status();
  ASSERT_TRUE(vm.ok()) << vm.status();
  absl::StatusOr<absl::Duration> paused =
      (*vm)->WaitForState("VM_STATE_PAUSED", kvmbox::Scaled(absl::Minutes(5)));
  ASSERT_TRUE(paused.ok()) << paused.status() << "\n" << (*vm)->Console();
  std::cout << "StartVm -> Paused (Linux panic reported): " << *paused << "\n";
  nlohmann::json shown = (*vm)->Show();
  EXPECT_EQ(shown.value("stateReason", ""),
            std::string("guest crashed: ") + kPanic);
  ExpectReportShown(**vm, shown);
  absl::StatusOr<CommandResult> stop = (*vm)->Vmctl({"stop", (*vm)->name()});
  ASSERT_TRUE(stop.ok());
  EXPECT_EQ(stop->exit_code, 0) << stop->err;
  EXPECT_TRUE((*vm)->WaitForState("VM_STATE_OFF").ok());
}

}  // namespace
}  // namespace hvtest
