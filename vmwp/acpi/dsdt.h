#ifndef HVSTACK_VMWP_ACPI_DSDT_H_
#define HVSTACK_VMWP_ACPI_DSDT_H_

#include "absl/status/statusor.h"
#include "vmwp/acpi/acpi_config.h"
#include "vmwp/acpi/bytes.h"

namespace vmwp::acpi {

// The DSDT's revision. 2 or more makes AML integers 64-bit.
inline constexpr uint8_t kDsdtRevision = 2;

// The Differentiated System Description Table, in AML:
//   Name(\_S5_, Package(4) {kS5SleepType, 0, 0, 0})  - how the guest powers off
//   Scope(\_SB_) {
//     Device(COM1) PNP0501, IO 0x3F8-0x3FF, IRQ 4      - with
//     config.legacy_devices Device(KBD_) PNP0303, IO 0x60 and 0x64, IRQ 1
//     Device(RTC_) PNP0B00, IO 0x70-0x71, IRQ 8
//     Device(VMBS) _HID "VMBus", _UID 0, IRQ vmbus->irq - with config.vmbus
//   }
// `config` must have passed ValidateAcpiConfig.
absl::StatusOr<Bytes> BuildDsdt(const AcpiConfig& config);

}  // namespace vmwp::acpi

#endif  // HVSTACK_VMWP_ACPI_DSDT_H_
