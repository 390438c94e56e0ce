#include "vid/synthetic_interface.h"

#include <x86intrin.h>

#include "absl/strings/str_cat.h"
#include "hvcore/hyperv/kvm_glue.h"
#include "hvcore/msr.h"

namespace vid {
namespace {

constexpr uint8_t kUdVector = 6;

}  // namespace

uint8_t* SyntheticInterface::Ram::HostPointer(uint64_t gpa, uint64_t len) {
  absl::StatusOr<std::span<uint8_t>> span = memory_.GetSpan(gpa, len);
  return span.ok() ? span->data() : nullptr;
}

uint64_t SyntheticInterface::ReadGuestTsc() { return tsc_.ReadGuestTsc(); }

uint64_t SyntheticInterface::Tsc::ReadGuestTsc() {
  return __rdtsc() +
         static_cast<uint64_t>(offset.load(std::memory_order_relaxed));
}

void SyntheticInterface::Injector::InjectSint(uint32_t vp_index, uint8_t vector,
                                              bool /*auto_eoi*/) {
  // Physical destination = APIC id = VP index (hvcore/cpuid.h); fixed
  // delivery, edge. auto_eoi cannot be honoured by KVM's LAPIC; CPUID
  // deprecates it.
  const kvm_msi msi = hvcore::hyperv::kvm::SintMsi(vp_index, vector);
  send_((uint64_t{msi.address_hi} << 32) | msi.address_lo, msi.data);
}

absl::StatusOr<std::unique_ptr<SyntheticInterface>> SyntheticInterface::Create(
    uint32_t vp_count, uint32_t tsc_khz, int64_t guest_tsc_offset,
    GuestMemory& memory, MsiSender send_msi,
    hvcore::hyperv::GuestCrashHandler* crash_handler) {
  if (tsc_khz == 0) {
    return absl::FailedPreconditionError(
        "the Hyper-V interface needs the guest TSC frequency, and KVM did not "
        "report it (KVM_GET_TSC_KHZ); turn enlightenments off for this VM");
  }
  std::unique_ptr<SyntheticInterface> si(
      new SyntheticInterface(memory, std::move(send_msi)));
  si->SetGuestTscOffset(guest_tsc_offset);
  absl::StatusOr<std::unique_ptr<hvcore::hyperv::HvPartition>> hv =
      hvcore::hyperv::HvPartition::Create(
          {.vp_count = vp_count,
           .tsc_hz = uint64_t{tsc_khz} * 1000,
           // The reference counter starts now. Not 0: hvcore writes
           // IA32_TSC = 0 at VP creation, but kvm_pvm ignores it (the guest
           // TSC is the host's).
           .tsc_at_start = si->tsc_.ReadGuestTsc()},
          si->ram_, si->tsc_, si->injector_, crash_handler);
  if (!hv.ok()) return hv.status();
  si->hv_ = *std::move(hv);
  return si;
}

absl::StatusOr<int64_t> SyntheticInterface::MeasureGuestTscOffset(
    const hvcore::VirtualProcessor& vp) {
  const uint64_t before = __rdtsc();
  absl::StatusOr<uint64_t> guest = vp.GetMsr(hvcore::kMsrIa32Tsc);
  const uint64_t after = __rdtsc();
  if (!guest.ok()) return guest.status();
  return static_cast<int64_t>(*guest - (before + (after - before) / 2));
}

void SyntheticInterface::HandleMsrRead(uint32_t vp_index,
                                       const hvcore::MsrRead& read) {
  if (!hvcore::hyperv::HvPartition::HandlesMsr(read.index)) {
    *read.error = 1;
    return;
  }
  const hvcore::hyperv::MsrResult r = hv_->ReadMsr(vp_index, read.index);
  *read.data = r.inject_gp ? 0 : r.value;
  *read.error = r.inject_gp ? 1 : 0;
}

void SyntheticInterface::HandleMsrWrite(uint32_t vp_index,
                                        const hvcore::MsrWrite& write) {
  if (!hvcore::hyperv::HvPartition::HandlesMsr(write.index)) {
    *write.error = 1;
    return;
  }
  const hvcore::hyperv::MsrResult r =
      hv_->WriteMsr(vp_index, write.index, write.value);
  *write.error = r.inject_gp ? 1 : 0;
}

absl::StatusOr<bool> SyntheticInterface::MaybeHandleHypercall(
    hvcore::VirtualProcessor& vp, const hvcore::PortIo& io) {
  if (io.port != hv_->hypercall_port() || !io.is_write || io.size != 4 ||
      io.count != 1) {
    return false;
  }
  absl::StatusOr<kvm_regs> regs = vp.GetRegs();
  if (!regs.ok()) return regs.status();
  absl::StatusOr<kvm_sregs> sregs = vp.GetSregs();
  if (!sregs.ok()) return sregs.status();
  const hvcore::hyperv::kvm::TrapCompletion done =
      hvcore::hyperv::kvm::CompleteHypercallTrap(*hv_, vp.index(), *regs,
                                                 *sregs);
  if (done.inject_ud) {
    if (absl::Status s = vp.InjectException(kUdVector); !s.ok()) return s;
    return true;
  }
  // RIP stays on the OUT: KVM completes the port write (and moves RIP past
  // it) when the VP re-enters; KVM_SET_REGS marks its register cache stale.
  if (absl::Status s = vp.SetRegs(done.regs); !s.ok()) return s;
  return true;
}

}  // namespace vid
