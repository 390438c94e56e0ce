#ifndef HVSTACK_VMWP_ACPI_FADT_H_
#define HVSTACK_VMWP_ACPI_FADT_H_

#include <cstdint>

#include "vmwp/acpi/acpi_config.h"
#include "vmwp/acpi/bytes.h"

namespace vmwp::acpi {

// FADT revision 6 (ACPI 6.0 layout, 276 bytes): what current Linux and ACPICA
// expect, and the first revision with every field we fill. The hardware is full
// (not hardware-reduced) ACPI: PM1a event/control blocks in I/O space, an SCI,
// and a FACS.
inline constexpr uint8_t kFadtRevision = 6;
inline constexpr uint8_t kFadtMinorRevision = 0;
inline constexpr size_t kFadtSize = 276;

// IAPC_BOOT_ARCH flags (ACPI 6.x, table 5.35).
// The CMOS RAM index of the RTC's century byte (vmwp/devices/cmos_rtc.h), for
// the FADT's CENTURY field when the legacy devices are present.
inline constexpr uint8_t kCmosCenturyIndex = 0x32;
inline constexpr uint16_t kBootArchLegacyDevices = 1u << 0;
inline constexpr uint16_t kBootArch8042 = 1u << 1;
inline constexpr uint16_t kBootArchVgaNotPresent = 1u << 2;

// FADT fixed feature flags (table 5.34) we set.
inline constexpr uint32_t kFadtWbinvd = 1u << 0;
inline constexpr uint32_t kFadtProcC1 = 1u << 2;
inline constexpr uint32_t kFadtPwrButton =
    1u << 4;  // 1: no fixed-feature power button
inline constexpr uint32_t kFadtSlpButton =
    1u << 5;  // 1: no fixed-feature sleep button
inline constexpr uint32_t kFadtResetRegSup = 1u << 10;
inline constexpr uint32_t kFadtHwReducedAcpi = 1u << 20;

// The Fixed ACPI Description Table, pointing at the FACS and DSDT (both below 4
// GiB).
Bytes BuildFadt(const AcpiConfig& config, uint32_t facs_address,
                uint64_t dsdt_address);

// The Firmware ACPI Control Structure: required outside hardware-reduced ACPI.
// It carries the global lock and the waking vector, neither of which this VM
// uses; it has no checksum. Must be placed 64-byte aligned.
inline constexpr size_t kFacsSize = 64;
inline constexpr size_t kFacsAlignment = 64;
Bytes BuildFacs();

}  // namespace vmwp::acpi

#endif  // HVSTACK_VMWP_ACPI_FADT_H_
