#include <gtest/gtest.h>
#include "absl/status/statusor.h"
#include <spdlog/spdlog.h>
TEST(Smoke, Works) { absl::StatusOr<int> v = 3; spdlog::info("x {}", *v); EXPECT_EQ(*v, 3); }
