#include "vmwp/acpi/dsdt.h"

#include <vector>

#include "vmwp/acpi/aml.h"
#include "vmwp/acpi/resource_template.h"
#include "vmwp/acpi/sdt.h"

namespace vmwp::acpi {
namespace {

using aml::Term;

std::vector<Term> LegacyDevices() {
  return {
      // Linux's 8250_pnp binds PNP0501; _UID tells COM1 from a later COM2.
      aml::Device(
          "COM1",
          {
              aml::Name("_HID", aml::EisaId("PNP0501")),
              aml::Name("_UID", aml::Integer(1)),
              aml::Name("_CRS", aml::ResourceTemplate({aml::IoPorts(0x3F8, 8),
                                                       aml::IrqNoFlags({4})})),
          }),
      // i8042: data port 0x60, command/status port 0x64. Linux's i8042 PNP
      // probe takes the
      // ports from here; no PS/2 mouse (PNP0F13) is described, so it leaves the
      // AUX port alone.
      aml::Device(
          "KBD_",
          {
              aml::Name("_HID", aml::EisaId("PNP0303")),
              aml::Name("_CRS", aml::ResourceTemplate({aml::IoPorts(0x60, 1),
                                                       aml::IoPorts(0x64, 1),
                                                       aml::IrqNoFlags({1})})),
          }),
      // The CMOS RTC; rtc_cmos binds PNP0B00.
      aml::Device(
          "RTC_",
          {
              aml::Name("_HID", aml::EisaId("PNP0B00")),
              aml::Name("_CRS", aml::ResourceTemplate({aml::IoPorts(0x70, 2),
                                                       aml::IrqNoFlags({8})})),
          }),
  };
}

// The VMBus root as Linux's vmbus_drv.c looks for it: its ACPI match table has
// "VMBUS" and "VMBus" (Hyper-V uses the latter, as a string _HID rather than an
// EISA id), and vmbus_acpi_add() fails unless the device has a _CRS. On x86 it
// reads no IRQ from there; it also walks the ancestors' _CRS for MMIO windows
// (for vPCI and the frame buffer), which a device directly under \_SB does not
// have.
Term VmbusDevice(const VmbusAcpiDevice& vmbus) {
  return aml::Device("VMBS",
                     {
                         aml::Name("_HID", aml::String("VMBus")),
                         aml::Name("_UID", aml::Integer(0)),
                         aml::Name("_CRS", aml::ResourceTemplate(
                                               {aml::IrqNoFlags({vmbus.irq})})),
                     });
}

// The hypercall trap port as a motherboard resource: Linux's pnp/system.c
// reserves PNP0C02 ranges, so nothing else is placed there.
Term HypercallPortReservation(uint16_t port) {
  return aml::Device(
      "HVHC",
      {
          aml::Name("_HID", aml::EisaId("PNP0C02")),
          aml::Name("_UID", aml::Integer(0x4856)),
          aml::Name("_CRS", aml::ResourceTemplate({aml::IoPorts(port, 1)})),
      });
}

}  // namespace

absl::StatusOr<Bytes> BuildDsdt(const AcpiConfig& config) {
  // Package elements are SLP_TYPa, SLP_TYPb and two reserved; only PM1a exists
  // here.
  const Term s5 = aml::Name(
      "\\_S5_", aml::Package({aml::Integer(kS5SleepType), aml::Integer(0),
                              aml::Integer(0), aml::Integer(0)}));
  std::vector<Term> sb_devices;
  if (config.legacy_devices) sb_devices = LegacyDevices();
  if (config.vmbus.has_value()) {
    sb_devices.push_back(VmbusDevice(*config.vmbus));
    if (config.vmbus->hypercall_port != 0)
      sb_devices.push_back(
          HypercallPortReservation(config.vmbus->hypercall_port));
  }

  std::vector<Term> body = {s5};
  if (!sb_devices.empty()) body.push_back(aml::Scope("\\_SB_", sb_devices));

  Bytes table = BeginSdt("DSDT", kDsdtRevision);
  for (const Term& term : body) {
    if (!term.ok()) return term.status();
    table.insert(table.end(), term->begin(), term->end());
  }
  FinishSdt(table);
  return table;
}

}  // namespace vmwp::acpi
