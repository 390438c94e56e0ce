#ifndef HVSTACK_VMWP_ACPI_MADT_H_
#define HVSTACK_VMWP_ACPI_MADT_H_

#include <cstdint>

#include "vmwp/acpi/acpi_config.h"
#include "vmwp/acpi/bytes.h"

namespace vmwp::acpi {

inline constexpr uint8_t kMadtRevision =
    5;  // ACPI 6.x; only types 0-4 are used
inline constexpr size_t kMadtFixedSize =
    44;  // header + Local APIC Address + Flags
inline constexpr uint32_t kMadtPcatCompat = 1u << 0;

// Interrupt controller structure types and sizes (ACPI 6.x, 5.2.12).
inline constexpr uint8_t kMadtLocalApic = 0;
inline constexpr uint8_t kMadtIoApic = 1;
inline constexpr uint8_t kMadtInterruptOverride = 2;
inline constexpr uint8_t kMadtLocalApicNmi = 4;
inline constexpr uint8_t kMadtLocalApicSize = 8;
inline constexpr uint8_t kMadtIoApicSize = 12;
inline constexpr uint8_t kMadtInterruptOverrideSize = 10;
inline constexpr uint8_t kMadtLocalApicNmiSize = 6;

// MPS INTI flags for an interrupt source override: polarity in bits 1:0,
// trigger in 3:2.
inline constexpr uint16_t kMpsActiveHigh = 0x1;
inline constexpr uint16_t kMpsLevelTriggered = 0x3 << 2;

// The Multiple APIC Description Table: PCAT_COMPAT (dual 8259s present, which
// KVM's irqchip emulates), one enabled Local APIC per vCPU (processor UID =
// APIC id = index), one IOAPIC, the PC's interrupt source overrides (ISA IRQ 0
// -> GSI 2; the SCI level/active-high) and LINT1 as NMI on every processor.
// `config` must have passed ValidateAcpiConfig.
Bytes BuildMadt(const AcpiConfig& config);

}  // namespace vmwp::acpi

#endif  // HVSTACK_VMWP_ACPI_MADT_H_
