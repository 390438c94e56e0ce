#ifndef HVSTACK_VMWP_VSP_STORAGE_SCSI_DISK_H_
#define HVSTACK_VMWP_VSP_STORAGE_SCSI_DISK_H_

// One SCSI direct-access LUN (SBC-3 disk) as Linux's sd sees it: what each
// command answers (INQUIRY with VPD pages 0x00, 0x80, 0x83, 0xB0, 0xB1,
// 0xB2; READ CAPACITY; MODE SENSE with the caching and control pages; ...)
// and which block I/O a command turns into (read, write, flush, unmap).
// Pure: no I/O and no guest memory, so it is unit-tested and fuzzed on its
// own; storvsp moves the data and runs the I/O on a BlockBackend.

#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "vmwp/vsp/storage/scsi_cdb.h"
#include "vmwp/vsp/storage/scsi_sense.h"

namespace vsp::storage {

struct DiskProperties {
  uint64_t block_count = 0;
  uint32_t block_size = 512;  // logical block size: 512 or 4096
  bool read_only = false;
  // The backend can deallocate (punch holes / NBD trim): UNMAP is offered.
  bool can_unmap = false;
  // Unmapped blocks read back as zeros (LBPRZ).
  bool unmap_zeroes = false;
  // Persistent identity (VPD 0x80 / 0x83); at most 64 printable bytes used.
  std::string serial;
  // Largest transfer of one command (VPD 0xB0 MAXIMUM TRANSFER LENGTH, and
  // what storvsc is told in QUERY_PROPERTIES).
  uint32_t max_transfer_bytes = 1u << 20;
  // UNMAP limits (VPD 0xB0).
  uint32_t max_unmap_blocks = 1u << 22;
  uint32_t max_unmap_descriptors = 64;
};

// What the disk answers at once: status, sense (with CHECK CONDITION) and
// the data-in bytes (already cut to the allocation length and the buffer).
struct ScsiReply {
  uint8_t status = kScsiGood;
  Sense sense;
  std::vector<uint8_t> data;
};

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool operator==(const ByteRange&) const = default;
};

// Block I/O a command asks for; on success the reply is GOOD with
// `transfer` bytes moved (reads and writes), on failure `error_sense`.
struct DiskIo {
  enum class Kind { kRead, kWrite, kFlush, kUnmap };
  Kind kind = Kind::kRead;
  uint64_t offset = 0;    // bytes (read / write)
  uint32_t transfer = 0;  // bytes (read / write)
  bool fua = false;       // write through to stable storage
  std::vector<ByteRange> unmap;
  Sense error_sense;  // what a failed I/O reports
};

using ScsiAction = std::variant<ScsiReply, DiskIo>;

ScsiReply CheckCondition(const Sense& sense);

class ScsiDisk {
 public:
  static constexpr char kVendor[] = "Msft    ";
  static constexpr char kProduct[] = "Virtual Disk    ";
  static constexpr char kRevision[] = "1.0 ";

  explicit ScsiDisk(DiskProperties properties);

  const DiskProperties& properties() const { return p_; }

  // The parameter data a command carries from the guest and that the disk
  // must read before it can decide (UNMAP's block descriptors): at most this
  // many bytes of the data-out buffer; 0 for commands without.
  static uint32_t ParameterBytes(std::span<const uint8_t> cdb);

  // Decodes and answers one command. `buffer_bytes` is the size of the
  // guest's data buffer; `parameters` the first ParameterBytes() bytes of a
  // data-out buffer (copied out of guest memory once).
  ScsiAction Execute(std::span<const uint8_t> cdb, uint32_t buffer_bytes,
                     std::span<const uint8_t> parameters) const;

 private:
  ScsiAction ExecuteParsed(const Cdb& cdb, uint32_t buffer_bytes,
                           std::span<const uint8_t> parameters) const;
  ScsiReply Inquiry(const Cdb& cdb) const;
  ScsiReply ModeSense(const Cdb& cdb) const;
  ScsiReply ReadCapacity10() const;
  ScsiReply ReadCapacity16() const;
  ScsiAction ReadWrite(const Cdb& cdb, uint32_t buffer_bytes) const;
  ScsiAction Unmap(const Cdb& cdb, std::span<const uint8_t> parameters) const;
  bool InRange(uint64_t lba, uint64_t blocks) const;

  DiskProperties p_;
};

// INQUIRY for a LUN that is not there on a target that has other LUNs:
// peripheral qualifier 3, device type 0x1F (SPC-4 6.6.2), so that Linux's
// scan goes on to REPORT LUNS.
ScsiReply NoLunInquiry(std::span<const uint8_t> cdb, uint32_t buffer_bytes);

// REPORT LUNS listing `luns` (single-level LUN addressing).
ScsiReply ReportLuns(std::span<const uint8_t> cdb, uint32_t buffer_bytes,
                     std::span<const uint8_t> luns);

}  // namespace vsp::storage

#endif  // HVSTACK_VMWP_VSP_STORAGE_SCSI_DISK_H_
