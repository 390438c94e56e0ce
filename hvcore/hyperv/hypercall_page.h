#ifndef HVSTACK_HVCORE_HYPERV_HYPERCALL_PAGE_H_
#define HVSTACK_HVCORE_HYPERV_HYPERCALL_PAGE_H_

// The hypercall page and the trap it uses to reach the VMM.
//
// KVM without in-kernel Hyper-V handles VMCALL/VMMCALL itself (KVM's own
// paravirtual hypercalls) and returns -KVM_ENOSYS to the guest without ever
// exiting to userspace, so the page cannot use them. It uses a 32-bit OUT to
// a private I/O port instead, which exits to userspace on every KVM
// (KVM_EXIT_IO) without depending on the guest's page tables (an MMIO trap
// would need a virtual mapping of a reserved GPA that guests do not have):
//
//   48 89 d0      mov rax, rdx      ; input GPA / fast input 1 moves to RAX
//   66 ba PP PP   mov dx, PORT      ; only DX changes
//   ef            out dx, eax       ; -> KVM_EXIT_IO, port PORT, size 4
//   c3            ret
//
// At the exit RCX = control, RAX = input, R8 = output / fast input 2. The
// VMM restores RDX from RAX and puts the result in RAX, so from the guest's
// side the page behaves exactly like Hyper-V's: call it with RCX, RDX, R8,
// get RAX; every other register is preserved. (x64 only: a 32-bit guest
// calling convention is not supported.) The rest of the page is int3.

#include <array>
#include <cstddef>
#include <cstdint>

#include "hvcore/hyperv/tlfs.h"

namespace hvcore::hyperv {

// "HV" in ASCII. The VMM registers it as a port range so that no device can
// take it, and the DSDT should reserve it (PNP0C02) so that Linux does not
// assign it to a PCI I/O BAR.
inline constexpr uint16_t kDefaultHypercallPort = 0x4856;

std::array<uint8_t, kPageSize> BuildHypercallPage(uint16_t port);

// The general-purpose registers a hypercall trap reads and writes.
struct HypercallTrapRegs {
  uint64_t rax, rcx, rdx, r8;
};

// What the guest asked for, in Hyper-V terms.
struct HypercallArgs {
  uint64_t control;  // RCX
  uint64_t input;    // guest's RDX: input GPA, or fast input word 1
  uint64_t output;   // R8: output GPA, or fast input word 2
};

// Registers at the OUT exit -> the call.
inline HypercallArgs ArgsFromTrap(const HypercallTrapRegs& regs) {
  return HypercallArgs{regs.rcx, regs.rax, regs.r8};
}

// Registers to write back before re-entering the guest: RDX restored, RAX =
// the hypercall result; RCX and R8 untouched.
inline HypercallTrapRegs CompleteTrap(const HypercallTrapRegs& at_exit,
                                      uint64_t result) {
  HypercallTrapRegs regs = at_exit;
  regs.rdx = at_exit.rax;
  regs.rax = result;
  return regs;
}

}  // namespace hvcore::hyperv

#endif  // HVSTACK_HVCORE_HYPERV_HYPERCALL_PAGE_H_
