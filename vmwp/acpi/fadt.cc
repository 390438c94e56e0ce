#include "vmwp/acpi/fadt.h"

#include "vmwp/acpi/sdt.h"

namespace vmwp::acpi {
namespace {

// PM1 event block: 2-byte status + 2-byte enable register. PM1 control block: 2
// bytes.
constexpr uint8_t kPm1EventLength = 4;
constexpr uint8_t kPm1ControlLength = 2;

GenericAddress IoPortGas(uint16_t port, uint8_t length_bytes,
                         uint8_t access_size) {
  return {.space_id = kGasSystemIo,
          .bit_width = static_cast<uint8_t>(8 * length_bytes),
          .bit_offset = 0,
          .access_size = access_size,
          .address = port};
}

}  // namespace

Bytes BuildFadt(const AcpiConfig& config, uint32_t facs_address,
                uint64_t dsdt_address) {
  Bytes t = BeginSdt("FACP", kFadtRevision);
  // Since ACPI 2.0 the 64-bit X_ fields win when non-zero. We give the FACS
  // only in the 32-bit field (the spec wants exactly one of the two) and the
  // DSDT in both, equal, which is what ACPICA checks for when it reconciles
  // them.
  AppendU32(t, facs_address);                         // 36 FIRMWARE_CTRL
  AppendU32(t, static_cast<uint32_t>(dsdt_address));  // 40 DSDT
  AppendU8(t, 0);                // 44 reserved (was INT_MODEL)
  AppendU8(t, 0);                // 45 Preferred_PM_Profile: unspecified
  AppendU16(t, config.sci_irq);  // 46 SCI_INT
  // SMI_CMD = 0: no SMM to switch into ACPI mode; the hardware is always in
  // ACPI mode, so ACPI_ENABLE/ACPI_DISABLE, S4BIOS_REQ, PSTATE_CNT stay 0.
  AppendU32(t, 0);                         // 48 SMI_CMD
  AppendU8(t, 0);                          // 52 ACPI_ENABLE
  AppendU8(t, 0);                          // 53 ACPI_DISABLE
  AppendU8(t, 0);                          // 54 S4BIOS_REQ
  AppendU8(t, 0);                          // 55 PSTATE_CNT
  AppendU32(t, config.pm1a_event_port);    // 56 PM1a_EVT_BLK
  AppendU32(t, 0);                         // 60 PM1b_EVT_BLK
  AppendU32(t, config.pm1a_control_port);  // 64 PM1a_CNT_BLK
  AppendU32(t, 0);                         // 68 PM1b_CNT_BLK
  AppendU32(t, 0);                         // 72 PM2_CNT_BLK
  // No ACPI PM timer: Linux then uses the TSC / kvm-clock rather than a port it
  // would poll.
  AppendU32(t, 0);                 // 76 PM_TMR_BLK
  AppendU32(t, 0);                 // 80 GPE0_BLK: no general-purpose events
  AppendU32(t, 0);                 // 84 GPE1_BLK
  AppendU8(t, kPm1EventLength);    // 88 PM1_EVT_LEN
  AppendU8(t, kPm1ControlLength);  // 89 PM1_CNT_LEN
  AppendU8(t, 0);                  // 90 PM2_CNT_LEN
  AppendU8(t, 0);                  // 91 PM_TMR_LEN
  AppendU8(t, 0);                  // 92 GPE0_BLK_LEN
  AppendU8(t, 0);                  // 93 GPE1_BLK_LEN
  AppendU8(t, 0);                  // 94 GPE1_BASE
  AppendU8(t, 0);                  // 95 CST_CNT
  // C2/C3 latencies above 100/1000 us mean "not supported": idle is HLT (C1)
  // only.
  AppendU16(t, 101);   // 96 P_LVL2_LAT
  AppendU16(t, 1001);  // 98 P_LVL3_LAT
  AppendU16(t, 0);     // 100 FLUSH_SIZE
  AppendU16(t, 0);     // 102 FLUSH_STRIDE
  AppendU8(t, 0);      // 104 DUTY_OFFSET
  AppendU8(t, 0);      // 105 DUTY_WIDTH
  AppendU8(t, 0);      // 106 DAY_ALRM: no RTC day alarm
  AppendU8(t, 0);      // 107 MON_ALRM
  // 108 CENTURY: the CMOS index of the RTC's century byte, which
  // vmwp/devices/cmos_rtc keeps at 0x32 (as PCs do). Linux's RTC driver
  // reads the full year from it; 0 would mean "no century register".
  AppendU8(t, config.legacy_devices ? kCmosCenturyIndex : 0);
  const uint16_t boot_arch =
      kBootArchVgaNotPresent |
      (config.legacy_devices ? (kBootArchLegacyDevices | kBootArch8042) : 0);
  AppendU16(t, boot_arch);  // 109 IAPC_BOOT_ARCH
  AppendU8(t, 0);           // 111 reserved
  // No fixed power/sleep buttons: they would need the PM1 status/enable
  // registers to raise SCIs, which the worker does not do yet. The reset
  // register lets `reboot` work.
  AppendU32(t, kFadtWbinvd | kFadtProcC1 | kFadtPwrButton | kFadtSlpButton |
                   kFadtResetRegSup);  // 112 Flags
  AppendGenericAddress(
      t, IoPortGas(config.reset_port, 1, kGasAccessByte));  // 116 RESET_REG
  AppendU8(t, config.reset_value);                          // 128 RESET_VALUE
  AppendU16(t, 0);                                          // 129 ARM_BOOT_ARCH
  AppendU8(t, kFadtMinorRevision);  // 131 FADT minor version
  AppendU64(t, 0);             // 132 X_FIRMWARE_CTRL: FIRMWARE_CTRL is used
  AppendU64(t, dsdt_address);  // 140 X_DSDT
  AppendGenericAddress(t, IoPortGas(config.pm1a_event_port, kPm1EventLength,
                                    kGasAccessWord));  // 148 X_PM1a_EVT_BLK
  AppendGenericAddress(t, {});                         // 160 X_PM1b_EVT_BLK
  AppendGenericAddress(t, IoPortGas(config.pm1a_control_port, kPm1ControlLength,
                                    kGasAccessWord));  // 172 X_PM1a_CNT_BLK
  AppendGenericAddress(t, {});                         // 184 X_PM1b_CNT_BLK
  AppendGenericAddress(t, {});                         // 196 X_PM2_CNT_BLK
  AppendGenericAddress(t, {});                         // 208 X_PM_TMR_BLK
  AppendGenericAddress(t, {});                         // 220 X_GPE0_BLK
  AppendGenericAddress(t, {});                         // 232 X_GPE1_BLK
  AppendGenericAddress(t, {});  // 244 SLEEP_CONTROL_REG: hardware-reduced only
  AppendGenericAddress(t, {});  // 256 SLEEP_STATUS_REG
  AppendU64(t, 0);              // 268 Hypervisor Vendor Identity
  FinishSdt(t);
  return t;
}

Bytes BuildFacs() {
  Bytes t;
  AppendFixedString(t, "FACS", 4);
  AppendU32(t, kFacsSize);  // 4 Length
  AppendU32(t, 0);          // 8 Hardware Signature: unchanged across boots
  AppendU32(t, 0);          // 12 Firmware Waking Vector: no S3
  AppendU32(t, 0);          // 16 Global Lock
  AppendU32(t, 0);          // 20 Flags: no S4BIOS, no 64-bit wake
  AppendU64(t, 0);          // 24 X Firmware Waking Vector
  AppendU8(t, 2);           // 32 Version
  AppendFixedString(t, "", 3, '\0');   // 33 reserved
  AppendU32(t, 0);                     // 36 OSPM Flags
  AppendFixedString(t, "", 24, '\0');  // 40 reserved
  return t;
}

}  // namespace vmwp::acpi
