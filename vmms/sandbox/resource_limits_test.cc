#include "vmms/sandbox/resource_limits.h"

#include "gtest/gtest.h"

namespace sandbox {
namespace {

TEST(ResourceLimitsTest, LimitsFollowTheVm) {
  ResourceLimits limits = LimitsForVm(1ull << 30, 4, 100ull << 20);
  EXPECT_EQ(limits.memory_bytes, (1ull << 30) + (100ull << 20));
  EXPECT_EQ(limits.cpu_quota_us, 4 * limits.cpu_period_us);
  EXPECT_EQ(limits.pids_max, kBasePids + 8);
}

}  // namespace
}  // namespace sandbox
