// The small pieces of worker handling: locating vmwp and the runtime files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "vmms/test_dir.h"
#include "vmms/test_kernels.h"
#include "vmms/vmwp_locator.h"
#include "vmms/worker_files.h"
#include "vmms/worker_sandbox.h"

namespace vmms {
namespace {

using ::testing::HasSubstr;

TEST(LocateVmwpTest, FlagThenEnvironment) {
  ::setenv("HVSTACK_VMWP", "/bin/true", 1);
  EXPECT_EQ(*LocateVmwp(""), "/bin/true");
  EXPECT_EQ(*LocateVmwp("/bin/false"), "/bin/false");
  ::unsetenv("HVSTACK_VMWP");
}

TEST(LocateVmwpTest, AnExplicitPathThatIsNotExecutableIsNamed) {
  auto missing = LocateVmwp("/no/such/vmwp");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(missing.status().message(), HasSubstr("/no/such/vmwp"));
  EXPECT_THAT(missing.status().message(), HasSubstr("--vmwp"));
  testing::TestDir dir;
  const std::string plain =
      testing::WriteFile(dir.path() + "/vmwp", "#!/bin/sh\n");
  std::filesystem::permissions(plain, std::filesystem::perms::owner_read);
  ::setenv("HVSTACK_VMWP", plain.c_str(), 1);
  auto not_executable = LocateVmwp("");
  EXPECT_THAT(not_executable.status().message(), HasSubstr("$HVSTACK_VMWP"));
  ::unsetenv("HVSTACK_VMWP");
}

TEST(WorkerFilesTest, ConfigRoundTripsAndNoTemporaryIsLeft) {
  testing::TestDir dir;
  hvstack::internal::WorkerConfig config;
  config.set_vm_name("web1");
  config.set_kvm_fd(3);
  const std::string path = dir.path() + "/worker_config.pb";
  ASSERT_TRUE(WriteWorkerConfig(path, config).ok());
  hvstack::internal::WorkerConfig read;
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(read.ParseFromIstream(&in));
  EXPECT_EQ(read.vm_name(), "web1");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(WorkerFilesTest, ExitReportAbsentOrGarbageIsNoReport) {
  testing::TestDir dir;
  const std::string path = dir.path() + "/exit_report.pb";
  EXPECT_FALSE(ReadExitReport(path).has_value());
  testing::WriteFile(path, "\xff\xff\xff garbage");
  EXPECT_FALSE(ReadExitReport(path).has_value());
  hvstack::internal::WorkerExitReport report;
  report.set_reason(hvstack::internal::WorkerExitReport::GUEST_POWER_OFF);
  testing::WriteFile(path, report.SerializeAsString());
  ASSERT_TRUE(ReadExitReport(path).has_value());
  EXPECT_EQ(ReadExitReport(path)->reason(),
            hvstack::internal::WorkerExitReport::GUEST_POWER_OFF);
}

TEST(WorkerFilesTest, ConsoleTailSpansTheRotatedLog) {
  testing::TestDir dir;
  const std::string log = dir.path() + "/console.log";
  EXPECT_EQ(ReadConsoleTail(log, 10), "");
  testing::WriteFile(log + ".1", "0123456789");
  testing::WriteFile(log, "abcdef");
  EXPECT_EQ(ReadConsoleTail(log, 10), "6789abcdef");
  EXPECT_EQ(ReadConsoleTail(log, 4), "cdef");
  EXPECT_EQ(ReadConsoleTail(log, 100), "0123456789abcdef");
}

TEST(WorkerSandboxTest, OomKillCountFromV1AndV2Files) {
  EXPECT_EQ(ParseOomKillCount("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"),
            0u);
  EXPECT_EQ(ParseOomKillCount("oom_kill_disable 0\nunder_oom 1\noom_kill 2\n"),
            2u);
  EXPECT_EQ(ParseOomKillCount("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n"), 1u);
  EXPECT_EQ(ParseOomKillCount(""), 0u);
  EXPECT_EQ(ParseOomKillCount("oom_kill x\n"), 0u);
}

}  // namespace
}  // namespace vmms
