#ifndef HVSTACK_HVCORE_HYPERV_HYPERCALL_CONTROL_H_
#define HVSTACK_HVCORE_HYPERV_HYPERCALL_CONTROL_H_

// The hypercall input value (control word) and result value, bit for bit.

#include <cstdint>
#include <optional>

#include "hvcore/hyperv/tlfs.h"

namespace hvcore::hyperv {

struct HypercallControl {
  uint16_t code;
  bool fast;
  uint16_t var_header_qwords;  // variable header size, in 8-byte units
  uint16_t rep_count;
  uint16_t rep_start;
};

// nullopt if a reserved bit (including "nested") is set: the caller answers
// HV_STATUS_INVALID_HYPERCALL_INPUT.
std::optional<HypercallControl> DecodeControl(uint64_t control);

inline uint64_t HypercallResult(HvStatus status, uint16_t reps_completed = 0) {
  return uint64_t{status} |
         (uint64_t{reps_completed & 0xFFFu} << kHcResultRepsShift);
}

}  // namespace hvcore::hyperv

#endif  // HVSTACK_HVCORE_HYPERV_HYPERCALL_CONTROL_H_
