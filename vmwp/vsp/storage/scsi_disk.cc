#include "vmwp/vsp/storage/scsi_disk.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace vsp::storage {
namespace {

void PutBe16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void PutBe32(uint8_t* p, uint32_t v) {
  PutBe16(p, v >> 16);
  PutBe16(p + 2, v & 0xFFFF);
}
void PutBe64(uint8_t* p, uint64_t v) {
  PutBe32(p, static_cast<uint32_t>(v >> 32));
  PutBe32(p + 4, static_cast<uint32_t>(v));
}
uint32_t Be16(const uint8_t* p) { return uint32_t{p[0]} << 8 | p[1]; }
uint32_t Be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 |
         p[3];
}
uint64_t Be64(const uint8_t* p) {
  return uint64_t{Be32(p)} << 32 | Be32(p + 4);
}

ScsiReply Good(std::vector<uint8_t> data, uint32_t allocation_length,
               uint32_t buffer_bytes) {
  ScsiReply r;
  data.resize(std::min<size_t>(
      data.size(), std::min<uint32_t>(allocation_length, buffer_bytes)));
  r.data = std::move(data);
  return r;
}

// The identity printed in VPD 0x80 / 0x83: printable ASCII, at most 64
// bytes, never empty.
std::string PrintableSerial(const std::string& serial) {
  std::string out;
  for (char c : serial) {
    if (out.size() == 64) break;
    if (c > 0x20 && c < 0x7F) out.push_back(c);
  }
  if (out.empty()) out = "0";
  return out;
}

constexpr uint8_t kCachingPage = 0x08;
constexpr uint8_t kControlPage = 0x0A;
constexpr uint8_t kAllPages = 0x3F;

// Caching mode page (SBC-3 6.4.5): write cache enabled (WCE), so Linux sends
// SYNCHRONIZE CACHE for its flushes; read cache enabled.
std::vector<uint8_t> CachingPage(bool changeable) {
  std::vector<uint8_t> p(20, 0);
  p[0] = kCachingPage;
  p[1] = 0x12;
  if (!changeable) p[2] = 0x04;  // WCE
  return p;
}

// Control mode page (SPC-4 7.5.8): unrestricted reordering (QUEUE ALGORITHM
// MODIFIER 1), no application tag ownership.
std::vector<uint8_t> ControlPage(bool changeable) {
  std::vector<uint8_t> p(12, 0);
  p[0] = kControlPage;
  p[1] = 0x0A;
  if (!changeable) p[3] = 0x10;
  return p;
}

}  // namespace

ScsiReply CheckCondition(const Sense& sense) {
  ScsiReply r;
  r.status = kScsiCheckCondition;
  r.sense = sense;
  return r;
}

ScsiDisk::ScsiDisk(DiskProperties properties) : p_(std::move(properties)) {
  p_.serial = PrintableSerial(p_.serial);
}

uint32_t ScsiDisk::ParameterBytes(std::span<const uint8_t> cdb) {
  if (cdb.size() >= 10 && cdb[0] == kUnmap) return Be16(cdb.data() + 7);
  return 0;
}

bool ScsiDisk::InRange(uint64_t lba, uint64_t blocks) const {
  return lba <= p_.block_count && blocks <= p_.block_count - lba;
}

ScsiAction ScsiDisk::Execute(std::span<const uint8_t> cdb,
                             uint32_t buffer_bytes,
                             std::span<const uint8_t> parameters) const {
  std::variant<Cdb, Sense> parsed = ParseCdb(cdb);
  if (const Sense* sense = std::get_if<Sense>(&parsed)) {
    return CheckCondition(*sense);
  }
  return ExecuteParsed(std::get<Cdb>(parsed), buffer_bytes, parameters);
}

ScsiAction ScsiDisk::ExecuteParsed(const Cdb& cdb, uint32_t buffer_bytes,
                                   std::span<const uint8_t> parameters) const {
  switch (cdb.kind) {
    case CdbKind::kTestUnitReady:
    case CdbKind::kStartStopUnit:
    case CdbKind::kPreventAllowMediumRemoval:
      return ScsiReply{};
    case CdbKind::kRequestSense: {
      // Autosense reports every condition with its command; nothing is
      // pending, so: NO SENSE.
      std::array<uint8_t, kFixedSenseSize> none = BuildFixedSense(Sense{});
      return Good({none.begin(), none.end()}, cdb.allocation_length,
                  buffer_bytes);
    }
    case CdbKind::kInquiry: {
      ScsiReply r = Inquiry(cdb);
      if (r.status != kScsiGood) return r;
      return Good(std::move(r.data), cdb.allocation_length, buffer_bytes);
    }
    case CdbKind::kModeSense: {
      ScsiReply r = ModeSense(cdb);
      if (r.status != kScsiGood) return r;
      return Good(std::move(r.data), cdb.allocation_length, buffer_bytes);
    }
    case CdbKind::kReadCapacity10:
      return Good(ReadCapacity10().data, 8, buffer_bytes);
    case CdbKind::kReadCapacity16:
      return Good(ReadCapacity16().data, cdb.allocation_length, buffer_bytes);
    case CdbKind::kRead:
    case CdbKind::kWrite:
      return ReadWrite(cdb, buffer_bytes);
    case CdbKind::kVerify:
      if (!InRange(cdb.lba, cdb.blocks)) {
        return CheckCondition(kSenseLbaOutOfRange);
      }
      return ScsiReply{};
    case CdbKind::kSynchronizeCache: {
      // blocks == 0: from lba to the end of the medium.
      if (!InRange(cdb.lba, cdb.blocks)) {
        return CheckCondition(kSenseLbaOutOfRange);
      }
      DiskIo io;
      io.kind = DiskIo::Kind::kFlush;
      io.error_sense = kSenseWriteError;
      return io;
    }
    case CdbKind::kUnmap:
      return Unmap(cdb, parameters);
    case CdbKind::kReportLuns:
      // Answered by the controller, which knows the target's LUNs.
      return CheckCondition(kSenseInvalidOpcode);
  }
  return CheckCondition(kSenseInvalidOpcode);
}

ScsiReply ScsiDisk::Inquiry(const Cdb& cdb) const {
  ScsiReply r;
  std::vector<uint8_t>& d = r.data;
  if (!cdb.evpd) {
    // Standard INQUIRY data (SPC-4 6.6.2), 36 bytes.
    d.assign(36, 0);
    d[0] = 0x00;         // connected, direct-access block device
    d[2] = 0x06;         // SPC-4
    d[3] = 0x02 | 0x10;  // response data format 2, HISUP
    d[4] = static_cast<uint8_t>(d.size() - 5);
    d[7] = 0x02;  // CMDQUE: tagged command queuing
    std::memcpy(&d[8], kVendor, 8);
    std::memcpy(&d[16], kProduct, 16);
    std::memcpy(&d[32], kRevision, 4);
    return r;
  }
  const std::string& serial = p_.serial;
  switch (cdb.page_code) {
    case 0x00: {  // supported VPD pages
      const uint8_t pages[] = {0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2};
      d.assign(4 + sizeof(pages), 0);
      d[1] = 0x00;
      d[3] = sizeof(pages);
      std::memcpy(&d[4], pages, sizeof(pages));
      return r;
    }
    case 0x80:  // unit serial number
      d.assign(4 + serial.size(), 0);
      d[1] = 0x80;
      d[3] = static_cast<uint8_t>(serial.size());
      std::memcpy(&d[4], serial.data(), serial.size());
      return r;
    case 0x83: {  // device identification: one T10 vendor ID designator
      const size_t designator = 8 + serial.size();
      d.assign(4 + 4 + designator, 0);
      d[1] = 0x83;
      PutBe16(&d[2], static_cast<uint32_t>(4 + designator));
      d[4] = 0x02;  // code set: ASCII
      d[5] = 0x01;  // association: logical unit; type: T10 vendor ID
      d[7] = static_cast<uint8_t>(designator);
      std::memcpy(&d[8], kVendor, 8);
      std::memcpy(&d[16], serial.data(), serial.size());
      return r;
    }
    case 0xB0: {  // block limits (SBC-3 6.5.3)
      d.assign(64, 0);
      d[1] = 0xB0;
      PutBe16(&d[2], 0x3C);
      // Optimal transfer length granularity: 4 KiB.
      PutBe16(&d[6], std::max<uint32_t>(1, 4096 / p_.block_size));
      PutBe32(&d[8], p_.max_transfer_bytes / p_.block_size);
      if (p_.can_unmap) {
        PutBe32(&d[20], p_.max_unmap_blocks);
        PutBe32(&d[24], p_.max_unmap_descriptors);
        // Optimal unmap granularity: 4 KiB (what a hole in a file is).
        PutBe32(&d[28], std::max<uint32_t>(1, 4096 / p_.block_size));
      }
      // MAXIMUM WRITE SAME LENGTH stays 0: WRITE SAME is not offered, so
      // Linux leaves write-zeroes to plain writes.
      return r;
    }
    case 0xB1:  // block device characteristics: non-rotating medium
      d.assign(64, 0);
      d[1] = 0xB1;
      PutBe16(&d[2], 0x3C);
      PutBe16(&d[4], 0x0001);
      return r;
    case 0xB2:  // logical block provisioning (SBC-3 6.5.4)
      d.assign(8, 0);
      d[1] = 0xB2;
      PutBe16(&d[2], 4);
      if (p_.can_unmap) {
        d[5] = 0x80 | (p_.unmap_zeroes ? 0x04 : 0x00);  // LBPU, LBPRZ
        d[6] = 0x02;                                    // thin provisioned
      }
      return r;
    default:
      return CheckCondition(kSenseInvalidFieldInCdb);
  }
}

ScsiReply ScsiDisk::ModeSense(const Cdb& cdb) const {
  if (cdb.page_control == 3) {
    return CheckCondition(kSenseSavingParametersNotSupported);
  }
  const bool changeable = cdb.page_control == 1;
  std::vector<uint8_t> pages;
  auto add = [&pages](const std::vector<uint8_t>& p) {
    pages.insert(pages.end(), p.begin(), p.end());
  };
  const bool all_subpages = cdb.subpage == 0xFF;
  if (cdb.subpage != 0 && !(all_subpages && cdb.page_code == kAllPages)) {
    return CheckCondition(kSenseInvalidFieldInCdb);
  }
  switch (cdb.page_code) {
    case kCachingPage:
      add(CachingPage(changeable));
      break;
    case kControlPage:
      add(ControlPage(changeable));
      break;
    case kAllPages:
      add(CachingPage(changeable));
      add(ControlPage(changeable));
      break;
    case 0x00:  // vendor-specific page 0: the header alone
      break;
    default:
      return CheckCondition(kSenseInvalidFieldInCdb);
  }
  // Header; no block descriptors (allowed whatever DBD says). Device-specific
  // parameter: WP (bit 7) for read-only disks; no DPOFUA (Linux then orders
  // writes with flushes instead of FUA).
  const uint8_t device_specific = p_.read_only ? 0x80 : 0x00;
  std::vector<uint8_t> d;
  if (cdb.mode_sense_10) {
    d.assign(8, 0);
    PutBe16(&d[0], static_cast<uint32_t>(6 + pages.size()));
    d[3] = device_specific;
  } else {
    d.assign(4, 0);
    d[0] = static_cast<uint8_t>(3 + pages.size());
    d[2] = device_specific;
  }
  d.insert(d.end(), pages.begin(), pages.end());
  ScsiReply r;
  r.data = std::move(d);
  return r;
}

ScsiReply ScsiDisk::ReadCapacity10() const {
  ScsiReply r;
  r.data.assign(8, 0);
  const uint64_t last = p_.block_count == 0 ? 0 : p_.block_count - 1;
  // Above 2^32 blocks: 0xFFFFFFFF tells the initiator to use (16).
  PutBe32(&r.data[0],
          last > 0xFFFFFFFFull ? 0xFFFFFFFFu : static_cast<uint32_t>(last));
  PutBe32(&r.data[4], p_.block_size);
  return r;
}

ScsiReply ScsiDisk::ReadCapacity16() const {
  ScsiReply r;
  r.data.assign(32, 0);
  PutBe64(&r.data[0], p_.block_count == 0 ? 0 : p_.block_count - 1);
  PutBe32(&r.data[8], p_.block_size);
  if (p_.can_unmap) {
    r.data[14] = 0x80 | (p_.unmap_zeroes ? 0x40 : 0x00);  // LBPME, LBPRZ
  }
  return r;
}

ScsiAction ScsiDisk::ReadWrite(const Cdb& cdb, uint32_t buffer_bytes) const {
  const bool write = cdb.kind == CdbKind::kWrite;
  if (write && p_.read_only) return CheckCondition(kSenseWriteProtected);
  if (!InRange(cdb.lba, cdb.blocks)) {
    return CheckCondition(kSenseLbaOutOfRange);
  }
  const uint64_t bytes = uint64_t{cdb.blocks} * p_.block_size;
  if (bytes > p_.max_transfer_bytes || bytes > buffer_bytes) {
    // More than the buffer the guest described, or than it was told it may
    // move at once.
    return CheckCondition(kSenseInvalidFieldInCdb);
  }
  if (bytes == 0) return ScsiReply{};
  DiskIo io;
  io.kind = write ? DiskIo::Kind::kWrite : DiskIo::Kind::kRead;
  io.offset = cdb.lba * p_.block_size;
  io.transfer = static_cast<uint32_t>(bytes);
  io.fua = write && cdb.fua;
  io.error_sense = write ? kSenseWriteError : kSenseUnrecoveredReadError;
  return io;
}

ScsiAction ScsiDisk::Unmap(const Cdb& cdb,
                           std::span<const uint8_t> parameters) const {
  if (!p_.can_unmap) return CheckCondition(kSenseInvalidOpcode);
  if (p_.read_only) return CheckCondition(kSenseWriteProtected);
  if (cdb.allocation_length == 0) return ScsiReply{};  // nothing to do
  if (cdb.allocation_length < 8 || parameters.size() < cdb.allocation_length) {
    return CheckCondition(kSenseParameterListLengthError);
  }
  const uint8_t* h = parameters.data();
  const uint32_t descriptor_bytes = Be16(h + 2);
  if (descriptor_bytes % 16 != 0) {
    return CheckCondition(kSenseInvalidFieldInParameterList);
  }
  if (descriptor_bytes > cdb.allocation_length - 8) {
    return CheckCondition(kSenseParameterListLengthError);
  }
  const uint32_t count = descriptor_bytes / 16;
  if (count > p_.max_unmap_descriptors) {
    return CheckCondition(kSenseInvalidFieldInParameterList);
  }
  DiskIo io;
  io.kind = DiskIo::Kind::kUnmap;
  io.error_sense = kSenseWriteError;
  for (uint32_t i = 0; i < count; ++i) {
    const uint8_t* d = h + 8 + 16 * i;
    const uint64_t lba = Be64(d);
    const uint32_t blocks = Be32(d + 8);
    if (!InRange(lba, blocks)) return CheckCondition(kSenseLbaOutOfRange);
    if (blocks > p_.max_unmap_blocks) {
      return CheckCondition(kSenseInvalidFieldInParameterList);
    }
    if (blocks == 0) continue;
    io.unmap.push_back({lba * p_.block_size, uint64_t{blocks} * p_.block_size});
  }
  if (io.unmap.empty()) return ScsiReply{};
  return io;
}

ScsiReply NoLunInquiry(std::span<const uint8_t> cdb, uint32_t buffer_bytes) {
  std::variant<Cdb, Sense> parsed = ParseCdb(cdb);
  if (const Sense* sense = std::get_if<Sense>(&parsed)) {
    return CheckCondition(*sense);
  }
  const Cdb& c = std::get<Cdb>(parsed);
  if (c.kind != CdbKind::kInquiry || c.evpd) {
    return CheckCondition(kSenseLunNotSupported);
  }
  std::vector<uint8_t> d(36, 0);
  d[0] = 0x7F;  // peripheral qualifier 3, device type 0x1F
  d[2] = 0x06;
  d[3] = 0x02;
  d[4] = 31;
  std::memcpy(&d[8], ScsiDisk::kVendor, 8);
  std::memcpy(&d[16], ScsiDisk::kProduct, 16);
  std::memcpy(&d[32], ScsiDisk::kRevision, 4);
  return Good(std::move(d), c.allocation_length, buffer_bytes);
}

ScsiReply ReportLuns(std::span<const uint8_t> cdb, uint32_t buffer_bytes,
                     std::span<const uint8_t> luns) {
  std::variant<Cdb, Sense> parsed = ParseCdb(cdb);
  if (const Sense* sense = std::get_if<Sense>(&parsed)) {
    return CheckCondition(*sense);
  }
  const Cdb& c = std::get<Cdb>(parsed);
  if (c.kind != CdbKind::kReportLuns)
    return CheckCondition(kSenseInvalidOpcode);
  // SELECT REPORT 0, 2 (all logical units) list them; 1 (well-known only)
  // lists none; others are reserved.
  if (c.select_report > 2) return CheckCondition(kSenseInvalidFieldInCdb);
  std::vector<uint8_t> lun_list;
  if (c.select_report != 1) {
    std::vector<uint8_t> sorted(luns.begin(), luns.end());
    std::sort(sorted.begin(), sorted.end());
    for (uint8_t lun : sorted) {
      uint8_t entry[8] = {0, lun, 0, 0, 0, 0, 0, 0};  // peripheral addressing
      lun_list.insert(lun_list.end(), entry, entry + 8);
    }
  }
  std::vector<uint8_t> d(8, 0);
  PutBe32(&d[0], static_cast<uint32_t>(lun_list.size()));
  d.insert(d.end(), lun_list.begin(), lun_list.end());
  return Good(std::move(d), c.allocation_length, buffer_bytes);
}

}  // namespace vsp::storage
