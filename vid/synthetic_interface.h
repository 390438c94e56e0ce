#ifndef HVSTACK_VID_SYNTHETIC_INTERFACE_H_
#define HVSTACK_VID_SYNTHETIC_INTERFACE_H_

// The Hyper-V synthetic interface of one vid::Partition: hvcore/hyperv's
// HvPartition plus the seams it needs from vid (guest RAM, the guest TSC,
// SINT delivery through the in-kernel LAPIC), and the intercept handlers the
// VP loop calls for synthetic MSR exits and the hypercall page's trap. It
// knows no devices: the worker attaches VMBus to hv() (connections(),
// PostMessage, SignalEvent).
//
// Sandbox rule: everything on the VP thread uses KVM_GET/SET_REGS, SREGS,
// VCPU_EVENTS and KVM_SIGNAL_MSI only; the MSR filter and the CPUID were set
// up when the hvcore partition was created.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hvcore/hyperv/hv_partition.h"
#include "hvcore/virtual_processor.h"
#include "vid/guest_memory.h"

namespace vid {

class SyntheticInterface {
 public:
  // Delivers an MSI (address, data): vid::Partition::SignalMsi.
  using MsiSender = std::function<void(uint64_t address, uint32_t data)>;

  // `memory` must outlive this object. `tsc_khz` is the guest TSC frequency
  // (KVM_GET_TSC_KHZ); `guest_tsc_offset` = guest TSC - host rdtsc (see
  // MeasureGuestTscOffset). The reference counter (TIME_REF_COUNT, the TSC
  // page) starts at 0 now. `crash_handler` may be null.
  static absl::StatusOr<std::unique_ptr<SyntheticInterface>> Create(
      uint32_t vp_count, uint32_t tsc_khz, int64_t guest_tsc_offset,
      GuestMemory& memory, MsiSender send_msi,
      hvcore::hyperv::GuestCrashHandler* crash_handler = nullptr);

  hvcore::hyperv::HvPartition& hv() { return *hv_; }
  // The guest's TSC now, from any thread.
  uint64_t ReadGuestTsc();

  // The guest TSC is the host's rdtsc plus this (KVM keeps one offset per VM
  // when every vCPU got the same IA32_TSC at creation). Set again after a
  // reset created new VPs.
  void SetGuestTscOffset(int64_t offset) {
    tsc_.offset.store(offset, std::memory_order_relaxed);
  }
  // Measures the offset on `vp` (KVM_GET_MSRS IA32_TSC between two rdtsc).
  static absl::StatusOr<int64_t> MeasureGuestTscOffset(
      const hvcore::VirtualProcessor& vp);

  // VP-thread handlers. MSRs outside the synthetic range get a #GP.
  void HandleMsrRead(uint32_t vp_index, const hvcore::MsrRead& read);
  void HandleMsrWrite(uint32_t vp_index, const hvcore::MsrWrite& write);
  // True if `io` is the hypercall page's trap (a 4-byte OUT to
  // hv().hypercall_port()); then the hypercall has run and the VP's RAX/RDX
  // hold the result, or #UD is pending. Errors are host ioctl failures.
  absl::StatusOr<bool> MaybeHandleHypercall(hvcore::VirtualProcessor& vp,
                                            const hvcore::PortIo& io);

 private:
  class Ram final : public hvcore::hyperv::GuestRam {
   public:
    explicit Ram(GuestMemory& memory) : memory_(memory) {}
    uint8_t* HostPointer(uint64_t gpa, uint64_t len) override;

   private:
    GuestMemory& memory_;
  };
  struct Tsc final : public hvcore::hyperv::GuestTscSource {
    uint64_t ReadGuestTsc() override;
    std::atomic<int64_t> offset{0};
  };
  class Injector final : public hvcore::hyperv::SintInjector {
   public:
    explicit Injector(MsiSender send) : send_(std::move(send)) {}
    void InjectSint(uint32_t vp_index, uint8_t vector, bool auto_eoi) override;

   private:
    MsiSender send_;
  };

  SyntheticInterface(GuestMemory& memory, MsiSender send_msi)
      : ram_(memory), injector_(std::move(send_msi)) {}

  Ram ram_;
  Tsc tsc_;
  Injector injector_;
  std::unique_ptr<hvcore::hyperv::HvPartition> hv_;
};

}  // namespace vid

#endif  // HVSTACK_VID_SYNTHETIC_INTERFACE_H_
