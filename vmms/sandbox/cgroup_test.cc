#include "vmms/sandbox/cgroup.h"

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"

namespace sandbox {
namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(ss.str()));
}

TEST(CgroupTest, DetectsThisHost) {
  auto layout = DetectCgroupLayout();
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_TRUE(layout->version == 1 || layout->version == 2);
}

TEST(CgroupTest, MissingHierarchiesAreAClearError) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  auto layout = DetectCgroupLayout(tmp ? tmp : "/tmp");
  ASSERT_FALSE(layout.ok());
  EXPECT_EQ(layout.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(CgroupTest, CreateLimitJoinRemove) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  auto layout = DetectCgroupLayout();
  ASSERT_TRUE(layout.ok());
  const std::string id = absl::StrCat("cgroup-test-", ::getpid());
  ResourceLimits limits = LimitsForVm(128ull << 20, 2);
  auto cg = VmCgroup::Create(*layout, id, limits);
  ASSERT_TRUE(cg.ok()) << cg.status();
  EXPECT_EQ(Read(cg->LimitFile("memory")), absl::StrCat(limits.memory_bytes));
  EXPECT_EQ(Read(cg->LimitFile("pids")), absl::StrCat(limits.pids_max));
  EXPECT_NE(Read(cg->LimitFile("cpu")).find(absl::StrCat(limits.cpu_quota_us)),
            std::string::npos);
  // Creating again (a leftover from a crashed vmms) is fine.
  ASSERT_TRUE(VmCgroup::Create(*layout, id, limits).ok());

  pid_t child = ::fork();
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  ASSERT_TRUE(cg->AddProcess(child).ok());
  for (const std::string& dir : cg->dirs()) {
    EXPECT_EQ(Read(dir + "/cgroup.procs"), absl::StrCat(child)) << dir;
  }
  // Not removable while the process lives...
  ::kill(child, SIGKILL);
  int status;
  ::waitpid(child, &status, 0);
  // ...and removable once it is reaped, twice without error.
  EXPECT_TRUE(cg->Remove().ok());
  EXPECT_TRUE(cg->Remove().ok());
  for (const std::string& dir : cg->dirs()) {
    EXPECT_FALSE(std::filesystem::exists(dir));
  }
}

TEST(CgroupTest, RejectsNamesThatAreNotNames) {
  auto layout = DetectCgroupLayout();
  ASSERT_TRUE(layout.ok());
  EXPECT_FALSE(VmCgroup::Create(*layout, "../escape", {}).ok());
  EXPECT_FALSE(VmCgroup::Create(*layout, "", {}).ok());
}

}  // namespace
}  // namespace sandbox
