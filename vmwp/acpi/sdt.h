#ifndef HVSTACK_VMWP_ACPI_SDT_H_
#define HVSTACK_VMWP_ACPI_SDT_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "vmwp/acpi/bytes.h"

// The 36-byte System Description Table header that every table but the RSDP and
// FACS starts with (ACPI 6.x, section 5.2.6), and the Generic Address Structure
// (5.2.3.2).
namespace vmwp::acpi {

inline constexpr size_t kSdtHeaderSize = 36;
inline constexpr size_t kSdtLengthOffset = 4;
inline constexpr size_t kSdtRevisionOffset = 8;
inline constexpr size_t kSdtChecksumOffset = 9;

// Who built the tables. Linux prints these in its "ACPI: FACP 0x... (v06 HVSTCK
// HVSTACK ...)" lines, which is how a boot log shows whose tables a guest saw.
inline constexpr absl::string_view kOemId = "HVSTCK";  // 6 bytes
inline constexpr absl::string_view kOemTableId =
    "HVSTACK";  // 8 bytes, space-padded
inline constexpr uint32_t kOemRevision = 1;
inline constexpr absl::string_view kCreatorId = "HVST";  // 4 bytes
inline constexpr uint32_t kCreatorRevision = 1;

// Starts a table: the header with its length and checksum left zero for
// FinishSdt.
Bytes BeginSdt(absl::string_view signature, uint8_t revision);

// Writes the table's final length and checksum into its header. Call once all
// fields are in.
void FinishSdt(Bytes& table);

// Generic Address Structure address space ids and access sizes used here.
inline constexpr uint8_t kGasSystemMemory = 0;
inline constexpr uint8_t kGasSystemIo = 1;
inline constexpr uint8_t kGasAccessUndefined = 0;
inline constexpr uint8_t kGasAccessByte = 1;
inline constexpr uint8_t kGasAccessWord = 2;
inline constexpr uint8_t kGasAccessDword = 3;

struct GenericAddress {
  uint8_t space_id = kGasSystemMemory;
  uint8_t bit_width = 0;
  uint8_t bit_offset = 0;
  uint8_t access_size = kGasAccessUndefined;
  uint64_t address = 0;  // all-zero means "not present"
};

inline constexpr size_t kGenericAddressSize = 12;

void AppendGenericAddress(Bytes& out, const GenericAddress& gas);

}  // namespace vmwp::acpi

#endif  // HVSTACK_VMWP_ACPI_SDT_H_
