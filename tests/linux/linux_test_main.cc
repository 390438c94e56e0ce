// main() for tests that boot the Linux test kernel. On a host without
// /dev/kvm they run inside kvmbox (tests/kvmbox), whose CPU is emulated and
// which has no network: so first, on the host, build (or find) the cached test
// kernel and fetch the guest programs the tests use; then do what kvmbox's
// gtest main does.
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"
#include "tests/kvmbox/kvmbox.h"
#include "tests/linux/test_kernel.h"

int main(int argc, char** argv) {
  const char* mode = std::getenv("HVSTACK_KVMBOX");
  const bool never = mode != nullptr && std::strcmp(mode, "never") == 0;
  if (!kvmbox::InsideKvmbox() &&
      (access("/dev/kvm", R_OK | W_OK) == 0 || !never)) {
    hvtest::PrepareLinuxTestsOnHost();
  }
  kvmbox::RunInKvmboxIfNeeded(argc, argv, kvmbox::InSuite::kRun);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
