#include "hvcore/kvm_system.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hvcore/partition.h"

namespace hvcore {
namespace {

using ::testing::HasSubstr;

TEST(KvmSystemTest, DevNullIsRejectedWithAClearMessage) {
  int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  absl::StatusOr<std::unique_ptr<KvmSystem>> kvm =
      KvmSystem::Adopt(base::ScopedFd(fd), "/dev/null");
  ASSERT_FALSE(kvm.ok());
  EXPECT_EQ(kvm.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(kvm.status().message(),
            "/dev/null: KVM_GET_API_VERSION failed: Inappropriate ioctl for "
            "device (is this "
            "really /dev/kvm?)");
}

TEST(KvmSystemTest, MissingDeviceIsFailedPrecondition) {
  absl::StatusOr<std::unique_ptr<KvmSystem>> kvm =
      KvmSystem::Open("/nonexistent/kvm");
  ASSERT_FALSE(kvm.ok());
  EXPECT_EQ(kvm.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(
      std::string(kvm.status().message()),
      HasSubstr("/nonexistent/kvm: cannot open: No such file or directory"));
}

TEST(KvmSystemTest, InvalidFdIsFailedPrecondition) {
  absl::StatusOr<std::unique_ptr<KvmSystem>> kvm =
      KvmSystem::Adopt(base::ScopedFd());
  ASSERT_FALSE(kvm.ok());
  EXPECT_EQ(kvm.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(KvmSystemTest, RealKvmPassesChecks) {
  if (int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC); fd < 0) {
    GTEST_SKIP() << "needs /dev/kvm (open read-write failed: "
                 << strerror(errno) << ")";
  } else {
    ::close(fd);
  }
  absl::StatusOr<std::unique_ptr<KvmSystem>> kvm = KvmSystem::Open();
  ASSERT_TRUE(kvm.ok()) << kvm.status();
  EXPECT_GE((*kvm)->vcpu_mmap_size(), sizeof(kvm_run));
  EXPECT_GE((*kvm)->max_vcpus(), 1);
  EXPECT_GE((*kvm)->max_memslots(), 2);
  EXPECT_FALSE((*kvm)->supported_cpuid().empty());
  bool has_leaf1 = false;
  for (const kvm_cpuid_entry2& e : (*kvm)->supported_cpuid())
    has_leaf1 |= e.function == 1;
  EXPECT_TRUE(has_leaf1);
}

TEST(FilterGuestCpuidTest, HidesWhatThisHostCannotRun) {
  kvm_cpuid_entry2 leaf1{};
  leaf1.function = 1;
  leaf1.ecx = 0xFFFFFFFF;
  leaf1.edx = 0xFFFFFFFF;
  kvm_cpuid_entry2 leaf7{};
  leaf7.function = 7;
  leaf7.ebx = 0xFFFFFFFF;
  kvm_cpuid_entry2 leafd{};
  leafd.function = 0xD;
  std::vector<kvm_cpuid_entry2> out = FilterGuestCpuid({leaf1, leaf7, leafd});
  ASSERT_EQ(out.size(), 2u);  // leaf 0xD (XSAVE state) is dropped
  EXPECT_EQ(out[0].ecx & (1u << 13), 0u) << "CX16";
  EXPECT_EQ(out[0].ecx & (1u << 26), 0u) << "XSAVE";
  EXPECT_EQ(out[0].ecx & (1u << 27), 0u) << "OSXSAVE";
  EXPECT_EQ(out[0].ecx & (1u << 28), 0u) << "AVX";
  EXPECT_NE(out[0].ecx & (1u << 31), 0u) << "hypervisor bit";
  EXPECT_EQ(out[0].edx, 0xFFFFFFFFu) << "EDX untouched";
  EXPECT_EQ(out[1].ebx & (1u << 5), 0u) << "AVX2";
  EXPECT_EQ(out[1].ebx & (1u << 16), 0u) << "AVX512F";
  EXPECT_NE(out[1].ebx & (1u << 0), 0u) << "FSGSBASE untouched";
}

}  // namespace
}  // namespace hvcore
