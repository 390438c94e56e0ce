#include "hvcore/hyperv/kvm_glue.h"

#include <memory>

#include "gtest/gtest.h"
#include "hvcore/hyperv/byte_array_guest_ram.h"
#include "hvcore/hyperv/fakes.h"
#include "hvcore/hyperv/hypercall_control.h"

namespace hvcore::hyperv::kvm {
namespace {

class KvmGlueTest : public testing::Test {
 protected:
  KvmGlueTest() : ram_(0x100000) {
    HvPartitionConfig config;
    config.vp_count = 2;
    config.tsc_hz = 3'000'000'000;
    partition_ = *HvPartition::Create(config, ram_, tsc_, injector_);
  }
  kvm_sregs Kernel64() {
    kvm_sregs s{};
    s.cs.selector = 0x10;
    s.cs.l = 1;
    s.efer = 0x500;
    return s;
  }

  ByteArrayGuestRam ram_;
  FakeTsc tsc_;
  RecordingInjector injector_;
  std::unique_ptr<HvPartition> partition_;
};

TEST_F(KvmGlueTest, MsrFilterDeniesTheWholeRange) {
  std::unique_ptr<MsrFilter> f = MakeMsrFilter();
  EXPECT_EQ(f->filter.flags, uint32_t{KVM_MSR_FILTER_DEFAULT_ALLOW});
  EXPECT_EQ(f->filter.ranges[0].base, 0x40000000u);
  EXPECT_EQ(f->filter.ranges[0].nmsrs, 0x200u);
  EXPECT_EQ(f->filter.ranges[0].flags,
            uint32_t{KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE});
  EXPECT_EQ(f->filter.ranges[0].bitmap, f->bitmap.data());
  for (uint8_t b : f->bitmap) ASSERT_EQ(b, 0);
  EXPECT_EQ(f->filter.ranges[1].nmsrs, 0u);  // one range only
}

TEST_F(KvmGlueTest, MsrExits) {
  kvm_run run{};
  run.exit_reason = KVM_EXIT_X86_RDMSR;
  run.msr.index = kMsrVpIndex;
  run.msr.data = 0xDEAD;
  ASSERT_TRUE(CompleteMsrExit(*partition_, 1, run));
  EXPECT_EQ(run.msr.data, 1u);
  EXPECT_EQ(run.msr.error, 0);

  run.exit_reason = KVM_EXIT_X86_WRMSR;
  run.msr.index = kMsrVpIndex;  // read-only
  ASSERT_TRUE(CompleteMsrExit(*partition_, 1, run));
  EXPECT_EQ(run.msr.error, 1);

  run.msr.index = kMsrGuestOsId;
  run.msr.data = 0x8100ull << 48;
  ASSERT_TRUE(CompleteMsrExit(*partition_, 0, run));
  EXPECT_EQ(run.msr.error, 0);
  EXPECT_EQ(partition_->ReadMsr(1, kMsrGuestOsId).value, 0x8100ull << 48);

  run.msr.index = 0x10;  // IA32_TSC: not ours
  run.msr.error = 7;
  EXPECT_FALSE(CompleteMsrExit(*partition_, 0, run));
  EXPECT_EQ(run.msr.error, 7);
  run.exit_reason = KVM_EXIT_IO;
  EXPECT_FALSE(CompleteMsrExit(*partition_, 0, run));
}

TEST_F(KvmGlueTest, HypercallTrapRecognition) {
  kvm_run run{};
  run.exit_reason = KVM_EXIT_IO;
  run.io.direction = KVM_EXIT_IO_OUT;
  run.io.port = kDefaultHypercallPort;
  run.io.size = 4;
  run.io.count = 1;
  EXPECT_TRUE(IsHypercallTrap(*partition_, run));
  run.io.direction = KVM_EXIT_IO_IN;
  EXPECT_FALSE(IsHypercallTrap(*partition_, run));
  run.io.direction = KVM_EXIT_IO_OUT;
  run.io.size = 1;
  EXPECT_FALSE(IsHypercallTrap(*partition_, run));
  run.io.size = 4;
  run.io.count = 2;  // rep outsd
  EXPECT_FALSE(IsHypercallTrap(*partition_, run));
  run.io.count = 1;
  run.io.port = 0x3F8;
  EXPECT_FALSE(IsHypercallTrap(*partition_, run));
}

TEST_F(KvmGlueTest, CallerMode) {
  kvm_sregs s = Kernel64();
  EXPECT_EQ(CallerFromSregs(s).cpl, 0);
  EXPECT_TRUE(CallerFromSregs(s).long_mode);
  s.cs.selector = 0x33;  // user code
  EXPECT_EQ(CallerFromSregs(s).cpl, 3);
  s = Kernel64();
  s.cs.l = 0;  // compatibility mode
  EXPECT_FALSE(CallerFromSregs(s).long_mode);
  s = Kernel64();
  s.efer = 0;  // protected mode, no LMA
  EXPECT_FALSE(CallerFromSregs(s).long_mode);
}

TEST_F(KvmGlueTest, HypercallTrapCompletion) {
  kvm_regs regs{};
  regs.rcx = 0x7777;  // unknown call code
  regs.rax = 0x1000;  // the guest's RDX, moved by the page
  regs.rdx = 0xAAAA0000'00004856;
  regs.r8 = 0x2000;
  regs.rip = 0x1234;
  // Page not enabled yet: #UD.
  EXPECT_TRUE(
      CompleteHypercallTrap(*partition_, 0, regs, Kernel64()).inject_ud);
  ASSERT_FALSE(partition_->WriteMsr(0, kMsrGuestOsId, 1).inject_gp);
  ASSERT_FALSE(partition_->WriteMsr(0, kMsrHypercall, 0x5000 | 1).inject_gp);
  const TrapCompletion done =
      CompleteHypercallTrap(*partition_, 0, regs, Kernel64());
  ASSERT_FALSE(done.inject_ud);
  EXPECT_EQ(done.regs.rax, HypercallResult(kHvStatusInvalidHypercallCode));
  EXPECT_EQ(done.regs.rdx, 0x1000u);
  EXPECT_EQ(done.regs.rcx, 0x7777u);
  EXPECT_EQ(done.regs.r8, 0x2000u);
  EXPECT_EQ(done.regs.rip, 0x1234u);  // KVM skips the OUT itself
}

TEST_F(KvmGlueTest, CpuidAndMsi) {
  const kvm_cpuid_entry2 e =
      ToKvmCpuidEntry({0x40000001, 0, 0x31237648, 1, 2, 3});
  EXPECT_EQ(e.function, 0x40000001u);
  EXPECT_EQ(e.flags, 0u);
  EXPECT_EQ(e.eax, 0x31237648u);
  EXPECT_EQ(e.edx, 3u);
  kvm_msi msi = SintMsi(3, 0xF3);
  EXPECT_EQ(msi.address_lo, 0xFEE03000u);
  EXPECT_EQ(msi.address_hi, 0u);
  EXPECT_EQ(msi.data, 0xF3u);
  msi = SintMsi(0x1234, 0x40);
  EXPECT_EQ(msi.address_lo, 0xFEE34000u);
  EXPECT_EQ(msi.address_hi, 0x1200u);
}

}  // namespace
}  // namespace hvcore::hyperv::kvm
