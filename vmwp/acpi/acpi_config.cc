#include "vmwp/acpi/acpi_config.h"

#include "absl/strings/str_cat.h"

namespace vmwp::acpi {
namespace {

// ISA IRQs the legacy devices use; another device claiming one would be a
// conflict Linux reports as a firmware bug.
constexpr uint8_t kLegacyIrqs[] = {1, 4, 8};
constexpr uint8_t kTimerIrq = 0;
constexpr uint8_t kCascadeIrq = 2;

bool IsLegacyIrq(uint8_t irq) {
  for (uint8_t legacy : kLegacyIrqs) {
    if (irq == legacy) return true;
  }
  return false;
}

}  // namespace

absl::Status ValidateAcpiConfig(const AcpiConfig& config) {
  if (config.vcpu_count == 0 || config.vcpu_count > kMaxVcpus) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ACPI tables: vcpu_count ", config.vcpu_count,
        " is out of range; the MADT describes 1 to ", kMaxVcpus, " vCPUs"));
  }
  if (config.sci_irq > 15 || config.sci_irq == kTimerIrq ||
      config.sci_irq == kCascadeIrq) {
    return absl::InvalidArgumentError(
        absl::StrCat("ACPI tables: sci_irq ", config.sci_irq,
                     " must be an ISA IRQ other than 0 and 2"));
  }
  if (config.legacy_devices && IsLegacyIrq(config.sci_irq)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ACPI tables: sci_irq ", config.sci_irq,
                     " collides with a legacy device's IRQ"));
  }
  if (config.legacy_devices && config.ioapic_gsi_base != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ACPI tables: ioapic_gsi_base is ", config.ioapic_gsi_base,
                     " but the legacy devices' ISA IRQs need GSIs 0-15 on the "
                     "IOAPIC; use 0"));
  }
  if (config.pm1a_event_port == 0 || config.pm1a_control_port == 0) {
    return absl::InvalidArgumentError(
        "ACPI tables: the PM1a event and control blocks are required (no "
        "hardware-reduced ACPI)");
  }
  if (config.pm1a_control_port >= config.pm1a_event_port &&
      config.pm1a_control_port < config.pm1a_event_port + 4) {
    return absl::InvalidArgumentError(
        "ACPI tables: the PM1a control block overlaps the 4-byte PM1a event "
        "block");
  }
  if (config.vmbus.has_value()) {
    const uint8_t irq = config.vmbus->irq;
    if (irq > 15 || irq == kTimerIrq || irq == kCascadeIrq ||
        irq == config.sci_irq || (config.legacy_devices && IsLegacyIrq(irq))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ACPI tables: VMBus irq ", irq,
          " must be a free ISA IRQ (not 0, 2, the SCI or a legacy device's)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace vmwp::acpi
