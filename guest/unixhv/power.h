#ifndef HVSTACK_GUEST_UNIXHV_POWER_H_
#define HVSTACK_GUEST_UNIXHV_POWER_H_

#include <stdint.h>

namespace unixhv {

// hvstack's power-off convention (guest/README.md): a 16-bit write of SLP_TYP=5
// (S5) | SLP_EN to the ACPI PM1a control register at port 0x604, the register a
// Linux guest finds in the FADT.
inline constexpr uint16_t kPm1aControlPort = 0x604;
inline constexpr uint16_t kPm1aSlpTypS5 = 5 << 10;
inline constexpr uint16_t kPm1aSlpEn = 1 << 13;
inline constexpr uint16_t kPm1aPowerOff = kPm1aSlpTypS5 | kPm1aSlpEn;  // 0x3400

}  // namespace unixhv

// Powers the VM off. If the VMM ignores the request, halts forever with
// interrupts off.
extern "C" [[noreturn]] void unixhv_power_off();

#endif  // HVSTACK_GUEST_UNIXHV_POWER_H_
