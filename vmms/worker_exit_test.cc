#include "vmms/worker_exit.h"

#include <gtest/gtest.h>
#include <signal.h>

#include "vmms/worker_spawn.h"

namespace vmms {
namespace {

using hvstack::internal::WorkerExitReport;

WorkerExitReport Report(WorkerExitReport::Reason reason,
                        std::string detail = "", int code = 0) {
  WorkerExitReport report;
  report.set_reason(reason);
  report.set_detail(detail);
  report.set_status_code(code);
  return report;
}

constexpr int kExit0 = 0;
constexpr int kKilled9 = SIGKILL;  // A wait status for "killed by SIGKILL".

TEST(WorkerExitTest, ReportsMapToStatesAndReasons) {
  auto off = ClassifyWorkerExit(Report(WorkerExitReport::GUEST_POWER_OFF),
                                kExit0, true, {});
  EXPECT_EQ(off.state, hvstack::v1::VM_STATE_OFF);
  EXPECT_EQ(off.reason, "guest powered off");
  auto acpi_off =
      ClassifyWorkerExit(Report(WorkerExitReport::GUEST_POWER_OFF,
                                "guest requested ACPI S5 power off"),
                         kExit0, true, {});
  EXPECT_EQ(acpi_off.reason, "guest powered off");
  auto ic_off =
      ClassifyWorkerExit(Report(WorkerExitReport::GUEST_POWER_OFF,
                                "guest shut down: shutdown requested by user"),
                         kExit0, true, {});
  EXPECT_EQ(ic_off.state, hvstack::v1::VM_STATE_OFF);
  EXPECT_EQ(ic_off.reason, "guest shut down: shutdown requested by user");

  auto crash = ClassifyWorkerExit(
      Report(WorkerExitReport::GUEST_CRASHED, "triple fault"), kExit0, true,
      {});
  EXPECT_EQ(crash.state, hvstack::v1::VM_STATE_CRASHED);
  EXPECT_EQ(crash.reason, "guest crashed: triple fault");

  auto stop =
      ClassifyWorkerExit(Report(WorkerExitReport::STOP_REQUESTED), kExit0, true,
                         std::string("stopped by user (hard power-off)"));
  EXPECT_EQ(stop.state, hvstack::v1::VM_STATE_OFF);
  EXPECT_EQ(stop.reason, "stopped by user (hard power-off)");

  auto error =
      ClassifyWorkerExit(Report(WorkerExitReport::WORKER_ERROR, "no memory",
                                8 /* RESOURCE_EXHAUSTED */),
                         256, false, {});
  EXPECT_EQ(error.state, hvstack::v1::VM_STATE_OFF);
  EXPECT_EQ(error.reason, "worker failed to start: no memory");
  EXPECT_EQ(error.start_error.code(), absl::StatusCode::kResourceExhausted);
}

TEST(WorkerExitTest, NoReportDerivesTheReasonFromTheWaitStatus) {
  auto killed = ClassifyWorkerExit(std::nullopt, kKilled9, true, {});
  EXPECT_EQ(killed.state, hvstack::v1::VM_STATE_CRASHED);
  EXPECT_EQ(killed.reason, "worker killed by signal 9 (SIGKILL)");

  auto exited = ClassifyWorkerExit(std::nullopt, 3 << 8, true, {});
  EXPECT_EQ(exited.state, hvstack::v1::VM_STATE_CRASHED);
  EXPECT_EQ(exited.reason, "worker exited with status 3");

  // Killed by vmms on purpose: the stop reason, not a crash.
  auto stopped = ClassifyWorkerExit(std::nullopt, kKilled9, true,
                                    std::string("stopped by me"));
  EXPECT_EQ(stopped.state, hvstack::v1::VM_STATE_OFF);
  EXPECT_EQ(stopped.reason, "stopped by me");

  // Never ready: StartVm fails and the VM is left Off.
  auto early = ClassifyWorkerExit(std::nullopt, 3 << 8, false, {});
  EXPECT_EQ(early.state, hvstack::v1::VM_STATE_OFF);
  EXPECT_EQ(early.reason,
            "worker failed to start: worker exited with status 3");
  EXPECT_FALSE(early.start_error.ok());
}

TEST(WorkerExitTest, DescribesSignals) {
  EXPECT_EQ(DescribeWaitStatus(SIGSEGV),
            "worker killed by signal 11 (SIGSEGV)");
  EXPECT_EQ(DescribeWaitStatus(0), "worker exited with status 0");
}

}  // namespace
}  // namespace vmms
