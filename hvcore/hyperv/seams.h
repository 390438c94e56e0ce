#ifndef HVSTACK_HVCORE_HYPERV_SEAMS_H_
#define HVSTACK_HVCORE_HYPERV_SEAMS_H_

// What this package needs from the VMM and cannot do itself (it makes no KVM
// calls). vid implements these when it wires the package into the VP loop;
// see README.md, "Integration".

#include <array>
#include <cstdint>
#include <string>

namespace hvcore::hyperv {

// Raises a synthetic interrupt on a VP's local APIC. On KVM with the
// in-kernel irqchip: KVM_SIGNAL_MSI, fixed delivery, physical destination =
// the VP's APIC id, the given vector. Called from any thread (device threads
// posting messages, other VPs' hypercalls), never with this package's locks
// held. `auto_eoi` is the guest's SINT setting; KVM's LAPIC cannot honour it
// (we advertise "deprecate AutoEOI" so Linux does not ask for it).
class SintInjector {
 public:
  virtual ~SintInjector() = default;
  virtual void InjectSint(uint32_t vp_index, uint8_t vector, bool auto_eoi) = 0;
};

// The guest's TSC now, as every VP sees it (KVM keeps one TSC offset per VM
// when the VMM writes the same IA32_TSC to every vCPU at creation). Used for
// HV_X64_MSR_TIME_REF_COUNT so that the MSR and the TSC page agree.
class GuestTscSource {
 public:
  virtual ~GuestTscSource() = default;
  virtual uint64_t ReadGuestTsc() = 0;
};

// What a guest reported through the crash MSRs (Linux: on panic, and again
// with the kernel log tail when it can).
struct GuestCrashReport {
  uint32_t vp_index;
  std::array<uint64_t, 5> params;  // CRASH_P0..P4 as the guest wrote them
  // With NOTIFY_MSG: up to 4096 bytes the guest pointed at. Untrusted bytes,
  // not necessarily text: escape before logging.
  std::string message;
};

// Told when the guest reports a crash (it writes CRASH_CTL with NOTIFY).
// Called on the VP's thread, no lock held; the guest may keep running (Linux
// then halts or reboots), so this records, it does not stop the VM.
class GuestCrashHandler {
 public:
  virtual ~GuestCrashHandler() = default;
  virtual void OnGuestCrash(const GuestCrashReport& report) = 0;
};

}  // namespace hvcore::hyperv

#endif  // HVSTACK_HVCORE_HYPERV_SEAMS_H_
