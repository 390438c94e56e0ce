#ifndef HVSTACK_VMWP_ACPI_ROOT_TABLES_H_
#define HVSTACK_VMWP_ACPI_ROOT_TABLES_H_

#include <cstdint>

#include "absl/types/span.h"
#include "vmwp/acpi/bytes.h"

// The two tables a guest starts from: the RSDP (found by a scan of the BIOS
// area or from boot_params.acpi_rsdp_addr) and the XSDT it points to, which
// lists every other table but the DSDT and FACS (those hang off the FADT).
namespace vmwp::acpi {

inline constexpr size_t kRsdpSize = 36;
inline constexpr uint8_t kRsdpRevision = 2;  // ACPI 2.0+: has the XSDT address
inline constexpr size_t kRsdpChecksumOffset = 8;
inline constexpr size_t kRsdpV1Size = 20;  // what the first checksum covers
inline constexpr size_t kRsdpExtendedChecksumOffset = 32;
// Linux scans the BIOS area for "RSD PTR " on 16-byte boundaries.
inline constexpr size_t kRsdpAlignment = 16;

inline constexpr uint8_t kXsdtRevision = 1;

// RSDP revision 2 with the XSDT address, no RSDT (RsdtAddress 0: x86-64 Linux
// uses the XSDT whenever the revision is 2 or more), and both checksums.
Bytes BuildRsdp(uint64_t xsdt_address);

// The XSDT listing `table_addresses` (64-bit GPAs).
Bytes BuildXsdt(absl::Span<const uint64_t> table_addresses);

}  // namespace vmwp::acpi

#endif  // HVSTACK_VMWP_ACPI_ROOT_TABLES_H_
