// gtest's main for tests that need /dev/kvm and hold up under nested TCG: on
// a host without /dev/kvm they run inside kvmbox (kvmbox.h).
#include "gtest/gtest.h"
#include "tests/kvmbox/kvmbox.h"

int main(int argc, char** argv) {
  kvmbox::RunInKvmboxIfNeeded(argc, argv, kvmbox::InSuite::kRun);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
