#include "vmwp/acpi/madt.h"

#include "vmwp/acpi/sdt.h"

namespace vmwp::acpi {
namespace {

constexpr uint32_t kLocalApicEnabled = 1u << 0;
constexpr uint8_t kIsaBus = 0;
constexpr uint8_t kAllProcessors = 0xFF;

void AppendOverride(Bytes& t, uint8_t isa_irq, uint32_t gsi, uint16_t flags) {
  AppendU8(t, kMadtInterruptOverride);
  AppendU8(t, kMadtInterruptOverrideSize);
  AppendU8(t, kIsaBus);
  AppendU8(t, isa_irq);
  AppendU32(t, gsi);
  AppendU16(t, flags);
}

}  // namespace

Bytes BuildMadt(const AcpiConfig& config) {
  Bytes t = BeginSdt("APIC", kMadtRevision);
  AppendU32(t, config.local_apic_address);
  AppendU32(t, kMadtPcatCompat);

  for (uint32_t i = 0; i < config.vcpu_count; ++i) {
    AppendU8(t, kMadtLocalApic);
    AppendU8(t, kMadtLocalApicSize);
    AppendU8(t, static_cast<uint8_t>(i));  // ACPI processor UID
    AppendU8(t, static_cast<uint8_t>(i));  // APIC id
    AppendU32(t, kLocalApicEnabled);
  }

  AppendU8(t, kMadtIoApic);
  AppendU8(t, kMadtIoApicSize);
  AppendU8(t, config.ioapic_id);
  AppendU8(t, 0);  // reserved
  AppendU32(t, config.ioapic_address);
  AppendU32(t, config.ioapic_gsi_base);

  // The PIT is wired to IOAPIC pin 2 on a PC (pin 0 carries the 8259's INTR),
  // as in KVM's irqchip routing. Flags 0: ISA defaults (edge, active-high).
  AppendOverride(t, 0, config.ioapic_gsi_base + 2, 0);
  // The SCI defaults to level/active-low; KVM's IOAPIC input is active-high
  // like QEMU's, so say so explicitly.
  AppendOverride(t, config.sci_irq, config.ioapic_gsi_base + config.sci_irq,
                 kMpsActiveHigh | kMpsLevelTriggered);

  // LINT1 is the NMI input on every PC-compatible processor.
  AppendU8(t, kMadtLocalApicNmi);
  AppendU8(t, kMadtLocalApicNmiSize);
  AppendU8(t, kAllProcessors);
  AppendU16(t, 0);  // flags: conforms to the bus
  AppendU8(t, 1);   // LINT1

  FinishSdt(t);
  return t;
}

}  // namespace vmwp::acpi
