#ifndef HVSTACK_HVCORE_MSR_H_
#define HVSTACK_HVCORE_MSR_H_

#include <cstdint>

// Architectural MSRs hvcore initializes (Intel SDM vol. 4).
namespace hvcore {

inline constexpr uint32_t kMsrIa32Tsc = 0x10;
inline constexpr uint32_t kMsrIa32ApicBase = 0x1B;
inline constexpr uint32_t kMsrIa32MiscEnable = 0x1A0;
inline constexpr uint32_t kMsrIa32Pat = 0x277;
inline constexpr uint32_t kMsrMtrrCap = 0xFE;
inline constexpr uint32_t kMsrMtrrPhysBase0 = 0x200;
inline constexpr uint32_t kMsrMtrrPhysMask0 = 0x201;
inline constexpr uint32_t kMsrMtrrDefType = 0x2FF;
inline constexpr uint32_t kMsrEfer = 0xC0000080;

inline constexpr uint64_t kMiscEnableFastStrings = 1ull << 0;
// WB, WT, UC-, UC, WB, WT, UC-, UC: the power-on value.
inline constexpr uint64_t kPatPowerOnDefault = 0x0007040600070406ull;
inline constexpr uint64_t kMtrrTypeUncacheable = 0;
inline constexpr uint64_t kMtrrTypeWriteBack = 6;
inline constexpr uint64_t kMtrrDefTypeEnable = 1ull << 11;
inline constexpr uint64_t kMtrrPhysMaskValid = 1ull << 11;

}  // namespace hvcore

#endif  // HVSTACK_HVCORE_MSR_H_
