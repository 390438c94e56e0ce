#include "vmwp/exit_report.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

namespace vmwp {
namespace {

using hvstack::internal::WorkerExitReport;

TEST(ExitReportTest, ErrorReportCarriesCodeAndMessage) {
  WorkerExitReport r =
      ErrorReport(absl::FailedPreconditionError("/dev/kvm: nope"));
  EXPECT_EQ(r.reason(), WorkerExitReport::WORKER_ERROR);
  EXPECT_EQ(r.status_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(r.detail(), "/dev/kvm: nope");
  EXPECT_EQ(ExitCodeFor(r), 1);
}

TEST(ExitReportTest, OutcomesMapToReasons) {
  using Kind = vid::RunOutcome::Kind;
  EXPECT_EQ(OutcomeReport({Kind::kPowerOff, "s5"}).reason(),
            WorkerExitReport::GUEST_POWER_OFF);
  EXPECT_EQ(OutcomeReport({Kind::kStopped, ""}).reason(),
            WorkerExitReport::STOP_REQUESTED);
  WorkerExitReport crash = OutcomeReport({Kind::kCrashed, "vp0: bytes f0 48"});
  EXPECT_EQ(crash.reason(), WorkerExitReport::GUEST_CRASHED);
  EXPECT_EQ(crash.detail(), "vp0: bytes f0 48");
  EXPECT_EQ(crash.status_code(), 0);
  EXPECT_EQ(ExitCodeFor(crash), 0);
  EXPECT_EQ(OutcomeReport({Kind::kReboot, "i8042"}).reason(),
            WorkerExitReport::REBOOT_REQUESTED);
}

TEST(ExitReportTest, PreopenedReportIsWrittenByTheFirstNameThatWorks) {
  std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/preopenXXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  absl::StatusOr<PreopenedExitReport> report =
      PreopenedExitReport::Open(dir + "/exit_report.pb");
  ASSERT_TRUE(report.ok()) << report.status();
  // The name inside a sandbox that this process never entered: skipped.
  report->AddName("/nonexistent-dir/exit_report.pb");
  WorkerExitReport r = OutcomeReport({vid::RunOutcome::Kind::kStopped, "x"});
  ASSERT_TRUE(report->Write(r).ok());
  std::ifstream in(dir + "/exit_report.pb", std::ios::binary);
  WorkerExitReport back;
  ASSERT_TRUE(back.ParseFromIstream(&in));
  EXPECT_EQ(back.reason(), WorkerExitReport::STOP_REQUESTED);
  EXPECT_EQ(back.detail(), "x");
  EXPECT_FALSE(PreopenedExitReport::Open("/nonexistent-dir/r.pb").ok());
}

TEST(ExitReportTest, WritesAtomically) {
  std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/reportXXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  WorkerExitReport r = OutcomeReport({vid::RunOutcome::Kind::kPowerOff, "bye"});
  ASSERT_TRUE(WriteExitReport(dir, r).ok());
  std::ifstream in(dir + "/exit_report.pb", std::ios::binary);
  WorkerExitReport back;
  ASSERT_TRUE(back.ParseFromIstream(&in));
  EXPECT_EQ(back.detail(), "bye");
  std::ifstream tmp(dir + "/exit_report.pb.tmp");
  EXPECT_FALSE(tmp.good()) << "the temporary file is renamed away";
  EXPECT_FALSE(WriteExitReport("/nonexistent-dir", r).ok());
}

}  // namespace
}  // namespace vmwp
