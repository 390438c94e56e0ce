#include "vmwp/acpi/sdt.h"

namespace vmwp::acpi {

Bytes BeginSdt(absl::string_view signature, uint8_t revision) {
  Bytes table;
  table.reserve(kSdtHeaderSize);
  AppendFixedString(table, signature, 4);
  AppendU32(table, 0);  // length: FinishSdt
  AppendU8(table, revision);
  AppendU8(table, 0);  // checksum: FinishSdt
  AppendFixedString(table, kOemId, 6);
  AppendFixedString(table, kOemTableId, 8);
  AppendU32(table, kOemRevision);
  AppendFixedString(table, kCreatorId, 4);
  AppendU32(table, kCreatorRevision);
  return table;
}

void FinishSdt(Bytes& table) {
  WriteLe(table, kSdtLengthOffset, table.size(), 4);
  table[kSdtChecksumOffset] = 0;
  table[kSdtChecksumOffset] = ChecksumFor(table);
}

void AppendGenericAddress(Bytes& out, const GenericAddress& gas) {
  AppendU8(out, gas.space_id);
  AppendU8(out, gas.bit_width);
  AppendU8(out, gas.bit_offset);
  AppendU8(out, gas.access_size);
  AppendU64(out, gas.address);
}

}  // namespace vmwp::acpi
