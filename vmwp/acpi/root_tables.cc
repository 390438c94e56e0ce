#include "vmwp/acpi/root_tables.h"

#include "vmwp/acpi/sdt.h"

namespace vmwp::acpi {

Bytes BuildRsdp(uint64_t xsdt_address) {
  Bytes t;
  AppendFixedString(t, "RSD PTR ", 8);
  AppendU8(t, 0);  // 8 checksum over the first 20 bytes
  AppendFixedString(t, kOemId, 6);
  AppendU8(t, kRsdpRevision);         // 15
  AppendU32(t, 0);                    // 16 RsdtAddress
  AppendU32(t, kRsdpSize);            // 20 Length
  AppendU64(t, xsdt_address);         // 24 XsdtAddress
  AppendU8(t, 0);                     // 32 extended checksum over all 36 bytes
  AppendFixedString(t, "", 3, '\0');  // 33 reserved
  t[kRsdpChecksumOffset] =
      ChecksumFor(absl::MakeConstSpan(t).first(kRsdpV1Size));
  t[kRsdpExtendedChecksumOffset] = ChecksumFor(t);
  return t;
}

Bytes BuildXsdt(absl::Span<const uint64_t> table_addresses) {
  Bytes t = BeginSdt("XSDT", kXsdtRevision);
  for (uint64_t address : table_addresses) AppendU64(t, address);
  FinishSdt(t);
  return t;
}

}  // namespace vmwp::acpi
