#include "vmms/sandbox/uid_allocator.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace sandbox {
namespace {

std::string TempFile(const std::string& name, const std::string& text) {
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string path = std::string(dir ? dir : "/tmp") + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(UidAllocatorTest, SlotMapsToBasePlusSlot) {
  auto passwd = TempFile("passwd1", "root:x:0:0::/root:/bin/sh\n");
  auto group = TempFile("group1", "root:x:0:\n");
  auto allocator = UidAllocator::Create(2000000, 100, passwd, group);
  ASSERT_TRUE(allocator.ok()) << allocator.status();
  auto id = allocator->ForSlot(7);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->uid, 2000007u);
  EXPECT_EQ(id->gid, 2000007u);
  // Deterministic: vmms recomputes it after a restart.
  EXPECT_EQ(allocator->ForSlot(7)->uid, id->uid);
}

TEST(UidAllocatorTest, SkipsRealAccountsAndGroups) {
  auto passwd = TempFile("passwd2", "svc:x:2000003:100::/:/bin/false\n");
  auto group = TempFile("group2", "grp:x:2000004:\n");
  auto allocator = UidAllocator::Create(2000000, 100, passwd, group);
  ASSERT_TRUE(allocator.ok());
  EXPECT_EQ(allocator->ForSlot(3).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(allocator->ForSlot(4).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(allocator->ForSlot(5).ok());
}

TEST(UidAllocatorTest, RangeChecks) {
  auto passwd = TempFile("passwd3", "");
  auto group = TempFile("group3", "");
  EXPECT_FALSE(UidAllocator::Create(0, 10, passwd, group).ok());
  EXPECT_FALSE(UidAllocator::Create(100, 0, passwd, group).ok());
  EXPECT_FALSE(UidAllocator::Create(0xFFFFFF00u, 0x1000, passwd, group).ok());
  auto allocator = UidAllocator::Create(3000000, 10, passwd, group);
  ASSERT_TRUE(allocator.ok());
  EXPECT_EQ(allocator->ForSlot(10).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(UidAllocator::Create(3000000, 10, "/nonexistent/passwd", group)
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(UidAllocatorTest, DefaultRangeIsFreeOnThisHost) {
  auto allocator = UidAllocator::Create();
  ASSERT_TRUE(allocator.ok()) << allocator.status();
  EXPECT_TRUE(allocator->ForSlot(0).ok());
}

}  // namespace
}  // namespace sandbox
