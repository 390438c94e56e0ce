#ifndef HVSTACK_VMWP_ACPI_ACPI_CONFIG_H_
#define HVSTACK_VMWP_ACPI_ACPI_CONFIG_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"

// What the ACPI tables describe: the VM's interrupt controllers, its fixed ACPI
// hardware (the PM1a blocks the worker emulates) and the devices in the DSDT.
// The defaults are the PC layout QEMU and Hyper-V Gen1 use, which is also what
// vmwp/devices implements.
namespace vmwp::acpi {

// The SLP_TYP value our \_S5_ object advertises. The worker's PM1a control
// device (vmwp/devices/acpi_power_port.h) powers off on SLP_EN with this
// SLP_TYP.
inline constexpr uint8_t kS5SleepType = 5;

// APIC ids are 8 bits in MADT type-0 entries and 0xFF is the broadcast id, so a
// VM described with xAPIC entries has at most 255 vCPUs (ids 0..254). More
// would need x2APIC entries.
inline constexpr uint32_t kMaxVcpus = 255;

struct VmbusAcpiDevice {
  // The ISA IRQ listed in the VMBus device's _CRS. Linux/x86 never uses it
  // (VMBus interrupts come on HYPERVISOR_CALLBACK_VECTOR), but vmbus_acpi_add()
  // fails when _CRS is missing, and Hyper-V lists an IRQ there too. It must not
  // be one of the legacy devices' IRQs (1, 4, 8) or the SCI.
  uint8_t irq = 5;
  // The port the hypercall page's OUT traps on (hvcore/hyperv
  // kDefaultHypercallPort), reserved as a motherboard resource (PNP0C02) so
  // that Linux never assigns it to a PCI I/O BAR. 0: not reserved.
  uint16_t hypercall_port = 0x4856;
};

struct AcpiConfig {
  // vCPUs get APIC ids and ACPI processor UIDs 0..vcpu_count-1.
  uint32_t vcpu_count = 1;

  uint8_t ioapic_id = 0;
  uint32_t ioapic_address = 0xFEC00000;
  // The first GSI the IOAPIC handles. ISA IRQs without an override are GSIs
  // 0-15, so with the legacy devices this must be 0.
  uint32_t ioapic_gsi_base = 0;
  uint32_t local_apic_address = 0xFEE00000;

  // 16-bit I/O ports of the PM1a event block (4 bytes: status, enable) and
  // control block (2 bytes). The worker treats SLP_TYP=kS5SleepType|SLP_EN
  // written to the control block as power-off.
  uint16_t pm1a_event_port = 0x600;
  uint16_t pm1a_control_port = 0x604;
  // ISA IRQ of the System Control Interrupt; described as level-triggered,
  // active-high.
  uint8_t sci_irq = 9;

  // FADT reset register: a byte written to an I/O port, what `reboot` uses
  // first (reboot=acpi is Linux's default on x86). Writing 0xFE to the i8042's
  // command port pulses the CPU reset line on a PC.
  uint16_t reset_port = 0x64;
  uint8_t reset_value = 0xFE;

  // COM1 (16550 at 0x3F8, IRQ 4), the i8042 keyboard controller (0x60/0x64, IRQ
  // 1) and the CMOS RTC (0x70-0x71, IRQ 8) in the DSDT, and the matching
  // IAPC_BOOT_ARCH flags.
  bool legacy_devices = true;

  // The VMBus root device, for enlightened guests.
  std::optional<VmbusAcpiDevice> vmbus;
};

// Checks the configuration is one the tables can describe truthfully.
absl::Status ValidateAcpiConfig(const AcpiConfig& config);

}  // namespace vmwp::acpi

#endif  // HVSTACK_VMWP_ACPI_ACPI_CONFIG_H_
