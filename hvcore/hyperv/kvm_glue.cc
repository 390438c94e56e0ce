#include "hvcore/hyperv/kvm_glue.h"

#include "hvcore/hyperv/hypercall_page.h"

namespace hvcore::hyperv::kvm {
namespace {

constexpr uint64_t kEferLma = 1ull << 10;

}  // namespace

std::unique_ptr<MsrFilter> MakeMsrFilter() {
  auto f = std::make_unique<MsrFilter>();
  f->filter.flags = KVM_MSR_FILTER_DEFAULT_ALLOW;
  f->filter.ranges[0].flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE;
  f->filter.ranges[0].nmsrs = kMsrRangeCount;
  f->filter.ranges[0].base = kMsrRangeBase;
  f->filter.ranges[0].bitmap = f->bitmap.data();
  return f;
}

bool CompleteMsrExit(HvPartition& partition, uint32_t vp_index, kvm_run& run) {
  const bool read = run.exit_reason == KVM_EXIT_X86_RDMSR;
  if (!read && run.exit_reason != KVM_EXIT_X86_WRMSR) return false;
  if (!HvPartition::HandlesMsr(run.msr.index)) return false;
  const MsrResult result =
      read ? partition.ReadMsr(vp_index, run.msr.index)
           : partition.WriteMsr(vp_index, run.msr.index, run.msr.data);
  if (read) run.msr.data = result.inject_gp ? 0 : result.value;
  run.msr.error = result.inject_gp ? 1 : 0;
  return true;
}

bool IsHypercallTrap(const HvPartition& partition, const kvm_run& run) {
  return run.exit_reason == KVM_EXIT_IO &&
         run.io.direction == KVM_EXIT_IO_OUT &&
         run.io.port == partition.hypercall_port() && run.io.size == 4 &&
         run.io.count == 1;
}

HypercallCaller CallerFromSregs(const kvm_sregs& sregs) {
  return HypercallCaller{
      .cpl = static_cast<uint8_t>(sregs.cs.selector & 3),
      .long_mode = (sregs.efer & kEferLma) != 0 && sregs.cs.l != 0,
  };
}

TrapCompletion CompleteHypercallTrap(HvPartition& partition, uint32_t vp_index,
                                     const kvm_regs& regs,
                                     const kvm_sregs& sregs) {
  const HypercallTrapRegs at_exit{regs.rax, regs.rcx, regs.rdx, regs.r8};
  const HypercallOutcome outcome = partition.Hypercall(
      vp_index, ArgsFromTrap(at_exit), CallerFromSregs(sregs));
  TrapCompletion done{.inject_ud = outcome.inject_ud, .regs = regs};
  if (!outcome.inject_ud) {
    const HypercallTrapRegs after = CompleteTrap(at_exit, outcome.result);
    done.regs.rax = after.rax;
    done.regs.rdx = after.rdx;
  }
  return done;
}

kvm_cpuid_entry2 ToKvmCpuidEntry(const CpuidLeaf& leaf) {
  kvm_cpuid_entry2 e{};
  e.function = leaf.function;
  e.index = leaf.index;
  e.flags = 0;  // no sub-leaves
  e.eax = leaf.eax;
  e.ebx = leaf.ebx;
  e.ecx = leaf.ecx;
  e.edx = leaf.edx;
  return e;
}

kvm_msi SintMsi(uint32_t apic_id, uint8_t vector) {
  kvm_msi msi{};
  msi.address_lo = 0xFEE00000u | ((apic_id & 0xFF) << 12);
  msi.address_hi = apic_id & 0xFFFFFF00u;
  msi.data = vector;  // fixed delivery mode (0), edge, assert
  return msi;
}

}  // namespace hvcore::hyperv::kvm
