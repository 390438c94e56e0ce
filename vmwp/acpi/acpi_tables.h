#ifndef HVSTACK_VMWP_ACPI_ACPI_TABLES_H_
#define HVSTACK_VMWP_ACPI_ACPI_TABLES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "vmwp/acpi/acpi_config.h"
#include "vmwp/acpi/bytes.h"

// Builds every ACPI table a Linux guest needs as one blob to copy into guest
// memory at a GPA the caller chooses. Tables inside point at each other by GPA,
// so the blob is only valid at that GPA.
namespace vmwp::acpi {

// The BIOS read-only area Linux scans for the RSDP when
// boot_params.acpi_rsdp_addr is 0 (16-byte steps over 0xE0000-0xFFFFF). The
// blob puts the RSDP at its start, so placing it at kBiosAreaStart works for
// both ways of finding it. The loader's e820 map reports this range reserved,
// so the guest never reuses it as RAM.
inline constexpr uint64_t kBiosAreaStart = 0xE0000;
inline constexpr uint64_t kBiosAreaEnd = 0x100000;

// The blob's base must be this aligned (the FACS needs 64 bytes).
inline constexpr uint64_t kAcpiBlobAlignment = 64;

struct TablePlacement {
  std::string signature;  // "RSDP", "FACS", "XSDT", "FACP", "APIC", "DSDT"
  uint64_t offset = 0;    // from the start of the blob
  uint64_t length = 0;
};

struct AcpiTables {
  uint64_t base_gpa = 0;
  Bytes bytes;
  uint64_t rsdp_offset = 0;
  std::vector<TablePlacement> tables;  // in blob order

  // What to put in boot_params.acpi_rsdp_addr.
  uint64_t rsdp_gpa() const { return base_gpa + rsdp_offset; }
  std::optional<TablePlacement> Find(absl::string_view signature) const;
  // The bytes of one table; empty if `signature` is not in the blob.
  absl::Span<const uint8_t> TableBytes(absl::string_view signature) const;
};

// Layout, in order, each table aligned: RSDP (offset 0), FACS (64-aligned),
// XSDT -> {FACP, APIC}, FACP -> {FACS, DSDT}, APIC (MADT), DSDT. Fails on an
// invalid config, a misaligned base, a blob that would reach above 4 GiB (the
// FADT's FACS pointer is 32-bit) or one that starts in the BIOS area and runs
// past its end.
absl::StatusOr<AcpiTables> BuildAcpiTables(const AcpiConfig& config,
                                           uint64_t base_gpa = kBiosAreaStart);

}  // namespace vmwp::acpi

#endif  // HVSTACK_VMWP_ACPI_ACPI_TABLES_H_
