// gtest's main for tests that need /dev/kvm: on a host without it they run
// inside kvmbox (kvmbox.h).
#include "gtest/gtest.h"
#include "tests/kvmbox/kvmbox.h"

int main(int argc, char** argv) {
  kvmbox::RunInKvmboxIfNeeded(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
