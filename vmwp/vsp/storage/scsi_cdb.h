#ifndef HVSTACK_VMWP_VSP_STORAGE_SCSI_CDB_H_
#define HVSTACK_VMWP_VSP_STORAGE_SCSI_CDB_H_

// SCSI command descriptor blocks (SPC-4, SBC-3) as Linux's sd and scsi
// layers issue them, decoded into one normalized struct. Pure: the CDB bytes
// come from the guest and every field is range-checked here; fuzzable.

#include <cstdint>
#include <span>
#include <variant>

#include "vmwp/vsp/storage/scsi_sense.h"

namespace vsp::storage {

// Operation codes handled by the disk.
enum ScsiOpcode : uint8_t {
  kTestUnitReady = 0x00,
  kRequestSense = 0x03,
  kRead6 = 0x08,
  kWrite6 = 0x0A,
  kInquiry = 0x12,
  kModeSelect6 = 0x15,
  kModeSense6 = 0x1A,
  kStartStopUnit = 0x1B,
  kPreventAllowMediumRemoval = 0x1E,
  kReadCapacity10 = 0x25,
  kRead10 = 0x28,
  kWrite10 = 0x2A,
  kVerify10 = 0x2F,
  kSynchronizeCache10 = 0x35,
  kWriteSame10 = 0x41,
  kUnmap = 0x42,
  kModeSelect10 = 0x55,
  kModeSense10 = 0x5A,
  kRead16 = 0x88,
  kWrite16 = 0x8A,
  kVerify16 = 0x8F,
  kSynchronizeCache16 = 0x91,
  kWriteSame16 = 0x93,
  kServiceActionIn16 = 0x9E,
  kReportLuns = 0xA0,
  kRead12 = 0xA8,
  kWrite12 = 0xAA,
};
// SERVICE ACTION IN(16) service actions.
inline constexpr uint8_t kSaReadCapacity16 = 0x10;

// CDB length of an opcode's group (SPC-4 4.2.5.1); 0 for vendor-specific
// and reserved groups.
size_t CdbLengthForOpcode(uint8_t opcode);

enum class CdbKind {
  kTestUnitReady,
  kRequestSense,
  kInquiry,
  kModeSense,
  kReadCapacity10,
  kReadCapacity16,
  kRead,
  kWrite,
  kSynchronizeCache,
  kUnmap,
  kReportLuns,
  kStartStopUnit,
  kPreventAllowMediumRemoval,
  kVerify,
};

struct Cdb {
  CdbKind kind = CdbKind::kTestUnitReady;
  uint8_t opcode = 0;
  // Read / write / verify / synchronize cache: the block range. For
  // SYNCHRONIZE CACHE, blocks == 0 means "to the end of the medium".
  uint64_t lba = 0;
  uint32_t blocks = 0;
  bool fua = false;
  // INQUIRY, MODE SENSE, READ CAPACITY(16), REPORT LUNS, REQUEST SENSE:
  // how many bytes the initiator accepts. UNMAP: parameter list length.
  uint32_t allocation_length = 0;
  // INQUIRY.
  bool evpd = false;
  uint8_t page_code = 0;
  // MODE SENSE.
  bool mode_sense_10 = false;
  bool dbd = false;
  uint8_t page_control = 0;  // 0 current, 1 changeable, 2 default, 3 saved
  uint8_t subpage = 0;
  // REPORT LUNS.
  uint8_t select_report = 0;
};

// Decodes `cdb` (the bytes the guest sent, cdb_length of them). Unknown
// opcodes give INVALID COMMAND OPERATION CODE; a CDB shorter than its group,
// reserved bits and values this disk cannot honour give INVALID FIELD IN CDB.
std::variant<Cdb, Sense> ParseCdb(std::span<const uint8_t> cdb);

}  // namespace vsp::storage

#endif  // HVSTACK_VMWP_VSP_STORAGE_SCSI_CDB_H_
