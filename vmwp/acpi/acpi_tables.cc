#include "vmwp/acpi/acpi_tables.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "vmwp/acpi/dsdt.h"
#include "vmwp/acpi/fadt.h"
#include "vmwp/acpi/madt.h"
#include "vmwp/acpi/root_tables.h"
#include "vmwp/acpi/sdt.h"

namespace vmwp::acpi {
namespace {

// Tables other than the RSDP and FACS only need natural alignment; 16 keeps
// each one on its own line in a hex dump.
constexpr uint64_t kTableAlignment = 16;
constexpr uint64_t k4GiB = uint64_t{1} << 32;

uint64_t AlignUp(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

}  // namespace

std::optional<TablePlacement> AcpiTables::Find(
    absl::string_view signature) const {
  for (const TablePlacement& t : tables) {
    if (t.signature == signature) return t;
  }
  return std::nullopt;
}

absl::Span<const uint8_t> AcpiTables::TableBytes(
    absl::string_view signature) const {
  std::optional<TablePlacement> t = Find(signature);
  if (!t.has_value()) return {};
  return absl::MakeConstSpan(bytes).subspan(t->offset, t->length);
}

absl::StatusOr<AcpiTables> BuildAcpiTables(const AcpiConfig& config,
                                           uint64_t base_gpa) {
  if (absl::Status s = ValidateAcpiConfig(config); !s.ok()) return s;
  if (base_gpa % kAcpiBlobAlignment != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("ACPI tables: base GPA %#x is not %d-byte aligned",
                        base_gpa, kAcpiBlobAlignment));
  }

  // Tables that point at nothing first; their sizes fix everyone's address.
  absl::StatusOr<Bytes> dsdt = BuildDsdt(config);
  if (!dsdt.ok()) return dsdt.status();
  const Bytes madt = BuildMadt(config);
  const Bytes facs = BuildFacs();
  constexpr size_t kXsdtEntries = 2;  // FACP, APIC
  const size_t xsdt_size = kSdtHeaderSize + 8 * kXsdtEntries;

  AcpiTables out;
  out.base_gpa = base_gpa;
  uint64_t cursor = 0;
  auto place = [&](absl::string_view signature, uint64_t length,
                   uint64_t alignment) {
    cursor = AlignUp(cursor, alignment);
    out.tables.push_back({std::string(signature), cursor, length});
    const uint64_t offset = cursor;
    cursor += length;
    return offset;
  };
  out.rsdp_offset = place("RSDP", kRsdpSize, kRsdpAlignment);
  const uint64_t facs_offset = place("FACS", kFacsSize, kFacsAlignment);
  const uint64_t xsdt_offset = place("XSDT", xsdt_size, kTableAlignment);
  const uint64_t fadt_offset = place("FACP", kFadtSize, kTableAlignment);
  const uint64_t madt_offset = place("APIC", madt.size(), kTableAlignment);
  const uint64_t dsdt_offset = place("DSDT", dsdt->size(), kTableAlignment);
  const uint64_t total = AlignUp(cursor, kTableAlignment);

  if (base_gpa + total > k4GiB) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ACPI tables: %d bytes at GPA %#x reach above 4 GiB; place them lower",
        total, base_gpa));
  }
  if (base_gpa >= kBiosAreaStart && base_gpa < kBiosAreaEnd &&
      base_gpa + total > kBiosAreaEnd) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ACPI tables: %d bytes at GPA %#x run past the BIOS area's end at %#x",
        total, base_gpa, kBiosAreaEnd));
  }

  const Bytes fadt =
      BuildFadt(config, static_cast<uint32_t>(base_gpa + facs_offset),
                base_gpa + dsdt_offset);
  const uint64_t xsdt_entries[kXsdtEntries] = {base_gpa + fadt_offset,
                                               base_gpa + madt_offset};
  const Bytes xsdt = BuildXsdt(xsdt_entries);
  const Bytes rsdp = BuildRsdp(base_gpa + xsdt_offset);

  out.bytes.assign(total, 0);
  const std::pair<uint64_t, const Bytes*> pieces[] = {
      {out.rsdp_offset, &rsdp}, {facs_offset, &facs}, {xsdt_offset, &xsdt},
      {fadt_offset, &fadt},     {madt_offset, &madt}, {dsdt_offset, &*dsdt},
  };
  for (size_t i = 0; i < std::size(pieces); ++i) {
    const auto& [offset, table] = pieces[i];
    // Sizes were fixed before the tables that point at others were built; a
    // mismatch would shift every address after it.
    if (table->size() != out.tables[i].length) {
      return absl::InternalError(absl::StrCat(
          "ACPI tables: ", out.tables[i].signature, " is ", table->size(),
          " bytes, laid out as ", out.tables[i].length));
    }
    std::copy(table->begin(), table->end(), out.bytes.begin() + offset);
  }
  return out;
}

}  // namespace vmwp::acpi
