#include "vmms/reboot_guard.h"

#include <gtest/gtest.h>

#include "absl/time/clock.h"

namespace vmms {
namespace {

TEST(RebootGuardTest, AllowsUpToTheLimitWithinTheWindow) {
  RebootGuard guard(3, absl::Seconds(10));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  EXPECT_TRUE(guard.Record(t0));
  EXPECT_TRUE(guard.Record(t0 + absl::Seconds(1)));
  EXPECT_TRUE(guard.Record(t0 + absl::Seconds(2)));
  EXPECT_FALSE(guard.Record(t0 + absl::Seconds(3)));
  EXPECT_EQ(guard.Describe(), "4 reboots within 10s (limit 3)");
}

TEST(RebootGuardTest, OldRebootsAgeOut) {
  RebootGuard guard(2, absl::Seconds(10));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(guard.Record(t0 + absl::Seconds(6 * i))) << i;
  }
}

TEST(RebootGuardTest, ZeroMeansNoReboots) {
  RebootGuard guard(0, absl::Seconds(10));
  EXPECT_FALSE(guard.Record(absl::Now()));
}

}  // namespace
}  // namespace vmms
