// gtest's main for tests that need /dev/kvm and are sized for real KVM: on a
// host without /dev/kvm they skip, unless HVSTACK_KVMBOX=always runs them in
// kvmbox (kvmbox.h).
#include "gtest/gtest.h"
#include "tests/kvmbox/kvmbox.h"

int main(int argc, char** argv) {
  kvmbox::RunInKvmboxIfNeeded(argc, argv, kvmbox::InSuite::kSkip);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
