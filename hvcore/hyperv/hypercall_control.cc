#include "hvcore/hyperv/hypercall_control.h"

namespace hvcore::hyperv {

std::optional<HypercallControl> DecodeControl(uint64_t control) {
  if (control & kHcReservedMask) return std::nullopt;
  return HypercallControl{
      .code = static_cast<uint16_t>(control & kHcCodeMask),
      .fast = (control & kHcFast) != 0,
      .var_header_qwords = static_cast<uint16_t>((control & kHcVarHeaderMask) >>
                                                 kHcVarHeaderShift),
      .rep_count = static_cast<uint16_t>((control & kHcRepCountMask) >>
                                         kHcRepCountShift),
      .rep_start = static_cast<uint16_t>((control & kHcRepStartMask) >>
                                         kHcRepStartShift),
  };
}

}  // namespace hvcore::hyperv
