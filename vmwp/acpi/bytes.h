#ifndef HVSTACK_VMWP_ACPI_BYTES_H_
#define HVSTACK_VMWP_ACPI_BYTES_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

// Little-endian byte assembly for ACPI tables and AML. ACPI is little-endian
// throughout, and building tables by appending fields (rather than overlaying
// packed structs) keeps every offset visible in the code and free of padding or
// alignment surprises.
namespace vmwp::acpi {

using Bytes = std::vector<uint8_t>;

// Appends the low `width` bytes of `value`, least significant first.
void AppendLe(Bytes& out, uint64_t value, size_t width);
inline void AppendU8(Bytes& out, uint8_t v) { out.push_back(v); }
inline void AppendU16(Bytes& out, uint16_t v) { AppendLe(out, v, 2); }
inline void AppendU32(Bytes& out, uint32_t v) { AppendLe(out, v, 4); }
inline void AppendU64(Bytes& out, uint64_t v) { AppendLe(out, v, 8); }

// Appends `text` padded with `pad` (or truncated) to exactly `width` bytes:
// signatures, OEM ids and the like are fixed-width and not NUL-terminated.
void AppendFixedString(Bytes& out, absl::string_view text, size_t width,
                       char pad = ' ');

// Overwrites `width` bytes at `offset` (which must lie inside `out`) with
// `value`.
void WriteLe(Bytes& out, size_t offset, uint64_t value, size_t width);

// Reads `width` little-endian bytes at `offset`. For tests and self-checks.
uint64_t ReadLe(absl::Span<const uint8_t> in, size_t offset, size_t width);

// The byte that makes the 8-bit sum of `data` plus that byte zero: the checksum
// rule shared by every ACPI table, the RSDP and AML resource templates.
uint8_t ChecksumFor(absl::Span<const uint8_t> data);

// The 8-bit sum of `data`; zero for a correctly checksummed table.
uint8_t ByteSum(absl::Span<const uint8_t> data);

}  // namespace vmwp::acpi

#endif  // HVSTACK_VMWP_ACPI_BYTES_H_
