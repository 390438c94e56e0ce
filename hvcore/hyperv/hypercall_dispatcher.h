#ifndef HVSTACK_HVCORE_HYPERV_HYPERCALL_DISPATCHER_H_
#define HVSTACK_HVCORE_HYPERV_HYPERCALL_DISPATCHER_H_

// Decodes a hypercall, fetches and checks its input, runs it, and returns the
// value for RAX. Everything here comes from the guest: the control word, the
// GPAs and the input bytes are checked before use and a bad value becomes an
// HV_STATUS for the guest, never an error for the VMM.
//
// Implemented: HvPostMessage (0x5C), HvSignalEvent (0x5D, fast or not),
// HvNotifyLongSpinWait (0x08, a hint: no-op). Any other call code, including
// the TLB-flush and IPI calls that we do not recommend in CPUID, answers
// HV_STATUS_INVALID_HYPERCALL_CODE; Linux then falls back to its native path.

#include <cstdint>

#include "hvcore/hyperv/connections.h"
#include "hvcore/hyperv/guest_ram.h"
#include "hvcore/hyperv/hypercall_control.h"
#include "hvcore/hyperv/hypercall_page.h"
#include "hvcore/hyperv/tlfs.h"

namespace hvcore::hyperv {

class HypercallDispatcher {
 public:
  HypercallDispatcher(GuestRam& ram, ConnectionTable& connections)
      : ram_(ram), connections_(connections) {}

  // The hypercall result value (status | reps completed << 32).
  uint64_t Dispatch(uint32_t vp_index, const HypercallArgs& args);

 private:
  HvStatus PostMessage(uint32_t vp_index, const HypercallControl& control,
                       const HypercallArgs& args);
  HvStatus SignalEvent(uint32_t vp_index, const HypercallControl& control,
                       const HypercallArgs& args);
  HvStatus NotifyLongSpinWait(const HypercallControl& control,
                              const HypercallArgs& args);
  // Copies a slow call's input block: 8-byte aligned, within one page and in
  // RAM, else INVALID_ALIGNMENT (the TLFS' common status for all three).
  HvStatus ReadInput(uint64_t gpa, void* out, uint64_t size);

  GuestRam& ram_;
  ConnectionTable& connections_;
};

}  // namespace hvcore::hyperv

#endif  // HVSTACK_HVCORE_HYPERV_HYPERCALL_DISPATCHER_H_
