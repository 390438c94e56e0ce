#include "vmwp/vsp/storage/scsi_cdb.h"

namespace vsp::storage {
namespace {

uint32_t Be16(const uint8_t* p) { return uint32_t{p[0]} << 8 | p[1]; }
uint32_t Be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 |
         p[3];
}
uint64_t Be64(const uint8_t* p) {
  return uint64_t{Be32(p)} << 32 | Be32(p + 4);
}

// RDPROTECT / WRPROTECT / VRPROTECT (bits 7-5 of byte 1): this disk has no
// protection information, so anything but 0 is refused (SBC-3 5.8).
bool HasProtectField(const uint8_t* c) { return (c[1] & 0xE0) != 0; }

}  // namespace

size_t CdbLengthForOpcode(uint8_t opcode) {
  switch (opcode >> 5) {
    case 0:
      return 6;
    case 1:
    case 2:
      return 10;
    case 4:
      return 16;
    case 5:
      return 12;
    default:
      return 0;  // 3: reserved / variable length; 6, 7: vendor specific
  }
}

std::variant<Cdb, Sense> ParseCdb(std::span<const uint8_t> cdb) {
  if (cdb.empty()) return kSenseInvalidOpcode;
  const uint8_t op = cdb[0];
  const size_t need = CdbLengthForOpcode(op);
  if (need == 0) return kSenseInvalidOpcode;
  if (cdb.size() < need) return kSenseInvalidFieldInCdb;
  const uint8_t* c = cdb.data();
  Cdb out;
  out.opcode = op;
  switch (op) {
    case kTestUnitReady:
      out.kind = CdbKind::kTestUnitReady;
      return out;
    case kRequestSense:
      out.kind = CdbKind::kRequestSense;
      if (c[1] & 0x01) return kSenseInvalidFieldInCdb;  // DESC: fixed only
      out.allocation_length = c[4];
      return out;
    case kRead6:
    case kWrite6:
      out.kind = op == kRead6 ? CdbKind::kRead : CdbKind::kWrite;
      out.lba = (uint32_t{c[1]} & 0x1F) << 16 | Be16(c + 2);
      out.blocks = c[4] == 0 ? 256 : c[4];  // SBC-3: 0 means 256 blocks
      return out;
    case kInquiry:
      out.kind = CdbKind::kInquiry;
      if (c[1] & 0x02) return kSenseInvalidFieldInCdb;  // CMDDT (obsolete)
      out.evpd = (c[1] & 0x01) != 0;
      out.page_code = c[2];
      if (!out.evpd && out.page_code != 0) return kSenseInvalidFieldInCdb;
      out.allocation_length = Be16(c + 3);
      return out;
    case kModeSense6:
    case kModeSense10:
      out.kind = CdbKind::kModeSense;
      out.mode_sense_10 = op == kModeSense10;
      out.dbd = (c[1] & 0x08) != 0;
      out.page_control = c[2] >> 6;
      out.page_code = c[2] & 0x3F;
      out.subpage = c[3];
      out.allocation_length = out.mode_sense_10 ? Be16(c + 7) : c[4];
      return out;
    case kStartStopUnit:
      out.kind = CdbKind::kStartStopUnit;
      return out;
    case kPreventAllowMediumRemoval:
      out.kind = CdbKind::kPreventAllowMediumRemoval;
      return out;
    case kReadCapacity10:
      out.kind = CdbKind::kReadCapacity10;
      out.allocation_length = 8;
      return out;
    case kRead10:
    case kWrite10:
    case kVerify10:
      if (HasProtectField(c)) return kSenseInvalidFieldInCdb;
      out.kind = op == kRead10    ? CdbKind::kRead
                 : op == kWrite10 ? CdbKind::kWrite
                                  : CdbKind::kVerify;
      if (op == kVerify10 && (c[1] & 0x02)) {
        return kSenseInvalidFieldInCdb;  // BYTCHK: no data compare
      }
      out.fua = op != kVerify10 && (c[1] & 0x08) != 0;
      out.lba = Be32(c + 2);
      out.blocks = Be16(c + 7);
      return out;
    case kRead12:
    case kWrite12:
      if (HasProtectField(c)) return kSenseInvalidFieldInCdb;
      out.kind = op == kRead12 ? CdbKind::kRead : CdbKind::kWrite;
      out.fua = (c[1] & 0x08) != 0;
      out.lba = Be32(c + 2);
      out.blocks = Be32(c + 6);
      return out;
    case kRead16:
    case kWrite16:
    case kVerify16:
      if (HasProtectField(c)) return kSenseInvalidFieldInCdb;
      out.kind = op == kRead16    ? CdbKind::kRead
                 : op == kWrite16 ? CdbKind::kWrite
                                  : CdbKind::kVerify;
      if (op == kVerify16 && (c[1] & 0x02)) return kSenseInvalidFieldInCdb;
      out.fua = op != kVerify16 && (c[1] & 0x08) != 0;
      out.lba = Be64(c + 2);
      out.blocks = Be32(c + 10);
      return out;
    case kSynchronizeCache10:
      out.kind = CdbKind::kSynchronizeCache;
      out.lba = Be32(c + 2);
      out.blocks = Be16(c + 7);
      return out;
    case kSynchronizeCache16:
      out.kind = CdbKind::kSynchronizeCache;
      out.lba = Be64(c + 2);
      out.blocks = Be32(c + 10);
      return out;
    case kUnmap:
      out.kind = CdbKind::kUnmap;
      if (c[1] & 0x01) return kSenseInvalidFieldInCdb;  // ANCHOR
      out.allocation_length = Be16(c + 7);
      return out;
    case kReportLuns:
      out.kind = CdbKind::kReportLuns;
      out.select_report = c[2];
      out.allocation_length = Be32(c + 6);
      // SPC-4 6.33: an allocation length below 16 is an error.
      if (out.allocation_length < 16) return kSenseInvalidFieldInCdb;
      return out;
    case kServiceActionIn16:
      if ((c[1] & 0x1F) != kSaReadCapacity16) return kSenseInvalidFieldInCdb;
      out.kind = CdbKind::kReadCapacity16;
      out.allocation_length = Be32(c + 10);
      return out;
    default:
      return kSenseInvalidOpcode;
  }
}

}  // namespace vsp::storage
