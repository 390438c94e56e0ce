#include "vmwp/vsp/storage/scsi_disk.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace vsp::storage {
namespace {

DiskProperties Props(uint64_t blocks = 2048, bool read_only = false,
                     bool unmap = true) {
  DiskProperties p;
  p.block_count = blocks;
  p.block_size = 512;
  p.read_only = read_only;
  p.can_unmap = unmap;
  p.unmap_zeroes = unmap;
  p.serial = "disk-0001";
  return p;
}

ScsiReply Reply(const ScsiDisk& d, std::vector<uint8_t> cdb,
                uint32_t buffer = 4096, std::vector<uint8_t> params = {}) {
  ScsiAction a = d.Execute(cdb, buffer, params);
  EXPECT_TRUE(std::holds_alternative<ScsiReply>(a));
  return std::holds_alternative<ScsiReply>(a) ? std::get<ScsiReply>(a)
                                              : ScsiReply{};
}
DiskIo Io(const ScsiDisk& d, std::vector<uint8_t> cdb, uint32_t buffer = 4096,
          std::vector<uint8_t> params = {}) {
  ScsiAction a = d.Execute(cdb, buffer, params);
  EXPECT_TRUE(std::holds_alternative<DiskIo>(a));
  return std::holds_alternative<DiskIo>(a) ? std::get<DiskIo>(a) : DiskIo{};
}
void ExpectCheck(const ScsiReply& r, const Sense& s) {
  EXPECT_EQ(r.status, kScsiCheckCondition);
  EXPECT_EQ(r.sense, s);
  EXPECT_TRUE(r.data.empty());
}
std::vector<uint8_t> Rw16(uint8_t op, uint64_t lba, uint32_t blocks) {
  std::vector<uint8_t> c(16, 0);
  c[0] = op;
  for (int i = 0; i < 8; ++i)
    c[2 + i] = static_cast<uint8_t>(lba >> (56 - 8 * i));
  for (int i = 0; i < 4; ++i)
    c[10 + i] = static_cast<uint8_t>(blocks >> (24 - 8 * i));
  return c;
}

TEST(ScsiDiskTest, StandardInquiry) {
  ScsiDisk d(Props());
  ScsiReply r = Reply(d, {kInquiry, 0, 0, 0, 96, 0});
  ASSERT_EQ(r.status, kScsiGood);
  ASSERT_EQ(r.data.size(), 36u);
  EXPECT_EQ(r.data[0], 0x00);  // disk, connected
  EXPECT_EQ(r.data[2], 0x06);  // SPC-4
  EXPECT_EQ(r.data[4], 31);
  EXPECT_EQ(r.data[7] & 0x02, 0x02);  // CMDQUE
  EXPECT_EQ(std::string(r.data.begin() + 8, r.data.begin() + 16), "Msft    ");
  EXPECT_EQ(std::string(r.data.begin() + 16, r.data.begin() + 32),
            "Virtual Disk    ");
  // Cut to the allocation length, and to the buffer.
  EXPECT_EQ(Reply(d, {kInquiry, 0, 0, 0, 5, 0}).data.size(), 5u);
  EXPECT_EQ(Reply(d, {kInquiry, 0, 0, 0, 36, 0}, 10).data.size(), 10u);
}

TEST(ScsiDiskTest, VpdPages) {
  ScsiDisk d(Props());
  ScsiReply p0 = Reply(d, {kInquiry, 1, 0x00, 0, 255, 0});
  EXPECT_EQ(p0.data, (std::vector<uint8_t>{0, 0, 0, 6, 0x00, 0x80, 0x83, 0xB0,
                                           0xB1, 0xB2}));
  ScsiReply p80 = Reply(d, {kInquiry, 1, 0x80, 0, 255, 0});
  EXPECT_EQ(std::string(p80.data.begin() + 4, p80.data.end()), "disk-0001");
  ScsiReply p83 = Reply(d, {kInquiry, 1, 0x83, 0, 255, 0});
  ASSERT_EQ(p83.data.size(), 4u + 4 + 8 + 9);
  EXPECT_EQ(p83.data[5], 0x01);  // T10 vendor ID, logical unit
  EXPECT_EQ(std::string(p83.data.begin() + 8, p83.data.end()),
            "Msft    disk-0001");
  ScsiReply b0 = Reply(d, {kInquiry, 1, 0xB0, 0, 255, 0});
  ASSERT_EQ(b0.data.size(), 64u);  // Linux reads the unmap fields only if >= 64
  EXPECT_EQ(b0.data[3], 0x3C);
  EXPECT_EQ(
      b0.data[8] << 24 | b0.data[9] << 16 | b0.data[10] << 8 | b0.data[11],
      (1 << 20) / 512);
  EXPECT_NE(b0.data[20] | b0.data[21] | b0.data[22] | b0.data[23],
            0);               // max unmap LBA count
  EXPECT_EQ(b0.data[43], 0);  // no WRITE SAME
  ScsiReply b1 = Reply(d, {kInquiry, 1, 0xB1, 0, 255, 0});
  EXPECT_EQ(b1.data[5], 1);  // non-rotating
  ScsiReply b2 = Reply(d, {kInquiry, 1, 0xB2, 0, 255, 0});
  EXPECT_EQ(b2.data[5], 0x84);  // LBPU | LBPRZ
  ExpectCheck(Reply(d, {kInquiry, 1, 0x89, 0, 255, 0}),
              kSenseInvalidFieldInCdb);
  // Without unmap support nothing advertises it.
  ScsiDisk plain(Props(2048, false, false));
  EXPECT_EQ(Reply(plain, {kInquiry, 1, 0xB2, 0, 255, 0}).data[5], 0);
}

TEST(ScsiDiskTest, ReadCapacity) {
  ScsiDisk d(Props(2048));
  ScsiReply rc10 = Reply(d, {kReadCapacity10, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_EQ(rc10.data, (std::vector<uint8_t>{0, 0, 0x07, 0xFF, 0, 0, 2, 0}));
  std::vector<uint8_t> rc16_cdb(16, 0);
  rc16_cdb[0] = kServiceActionIn16;
  rc16_cdb[1] = kSaReadCapacity16;
  rc16_cdb[13] = 32;
  ScsiReply rc16 = Reply(d, rc16_cdb);
  ASSERT_EQ(rc16.data.size(), 32u);
  EXPECT_EQ(rc16.data[7], 0xFF);
  EXPECT_EQ(rc16.data[6], 0x07);
  EXPECT_EQ(rc16.data[14], 0xC0);  // LBPME | LBPRZ
  // Beyond 2^32 blocks READ CAPACITY(10) says "use 16".
  ScsiDisk big(Props(uint64_t{1} << 33));
  ScsiReply big10 = Reply(big, {kReadCapacity10, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_EQ(big10.data[0], 0xFF);
  EXPECT_EQ(big10.data[3], 0xFF);
  ScsiReply big16 = Reply(big, rc16_cdb);
  EXPECT_EQ(big16.data[3], 0x01);
  EXPECT_EQ(big16.data[7], 0xFF);
}

TEST(ScsiDiskTest, ModeSenseWriteProtectAndCaching) {
  ScsiDisk rw(Props());
  ScsiDisk ro(Props(2048, true));
  // sd's first probe: all pages, 4 bytes.
  ScsiReply h = Reply(rw, {kModeSense6, 0, 0x3F, 0, 4, 0});
  ASSERT_EQ(h.data.size(), 4u);
  EXPECT_EQ(h.data[0], 3 + 20 + 12);
  EXPECT_EQ(h.data[2], 0x00);
  EXPECT_EQ(Reply(ro, {kModeSense6, 0, 0x3F, 0, 4, 0}).data[2], 0x80);
  ScsiReply cache = Reply(rw, {kModeSense6, 0, 0x08, 0, 255, 0});
  ASSERT_EQ(cache.data.size(), 4u + 20);
  EXPECT_EQ(cache.data[3], 0);  // no block descriptors
  EXPECT_EQ(cache.data[4], 0x08);
  EXPECT_EQ(cache.data[6] & 0x04, 0x04);  // WCE
  ScsiReply ms10 = Reply(ro, {kModeSense10, 0, 0x08, 0, 0, 0, 0, 0, 255, 0});
  ASSERT_EQ(ms10.data.size(), 8u + 20);
  EXPECT_EQ(ms10.data[1], 6 + 20);
  EXPECT_EQ(ms10.data[3], 0x80);
  ScsiReply changeable = Reply(rw, {kModeSense6, 0, 0x48, 0, 255, 0});
  EXPECT_EQ(changeable.data[6], 0);
  ExpectCheck(Reply(rw, {kModeSense6, 0, 0xC8, 0, 255, 0}),
              kSenseSavingParametersNotSupported);
  ExpectCheck(Reply(rw, {kModeSense6, 0, 0x1C, 0, 255, 0}),
              kSenseInvalidFieldInCdb);
}

TEST(ScsiDiskTest, ReadWriteRanges) {
  ScsiDisk d(Props(2048));
  DiskIo last = Io(d, Rw16(kRead16, 2047, 1));
  EXPECT_EQ(last.kind, DiskIo::Kind::kRead);
  EXPECT_EQ(last.offset, 2047u * 512);
  EXPECT_EQ(last.transfer, 512u);
  DiskIo w = Io(d, {kWrite10, 0x08, 0, 0, 0, 8, 0, 0, 8, 0});
  EXPECT_EQ(w.kind, DiskIo::Kind::kWrite);
  EXPECT_EQ(w.offset, 8u * 512);
  EXPECT_EQ(w.transfer, 4096u);
  EXPECT_TRUE(w.fua);
  ExpectCheck(Reply(d, Rw16(kRead16, 2047, 2)), kSenseLbaOutOfRange);
  ExpectCheck(Reply(d, Rw16(kRead16, 2048, 1)), kSenseLbaOutOfRange);
  ExpectCheck(Reply(d, Rw16(kWrite16, ~uint64_t{0}, 2)), kSenseLbaOutOfRange);
  // More than the guest's buffer, or than the negotiated maximum.
  ExpectCheck(Reply(d, Rw16(kRead16, 0, 9), 4096), kSenseInvalidFieldInCdb);
  ScsiDisk big(Props(8192));
  EXPECT_EQ(Io(big, Rw16(kRead16, 0, 2048), 1u << 21).transfer, 1u << 20);
  ExpectCheck(Reply(big, Rw16(kRead16, 0, 2049), 1u << 21),
              kSenseInvalidFieldInCdb);
  // Zero blocks: nothing to do.
  EXPECT_EQ(Reply(d, Rw16(kWrite16, 0, 0)).status, kScsiGood);
  ScsiDisk ro(Props(2048, true));
  ExpectCheck(Reply(ro, Rw16(kWrite16, 0, 1)), kSenseWriteProtected);
  EXPECT_EQ(Io(ro, Rw16(kRead16, 0, 1)).kind, DiskIo::Kind::kRead);
}

TEST(ScsiDiskTest, SyncVerifyAndSimpleCommands) {
  ScsiDisk d(Props(2048));
  EXPECT_EQ(Io(d, {kSynchronizeCache10, 0, 0, 0, 0, 0, 0, 0, 0, 0}).kind,
            DiskIo::Kind::kFlush);
  EXPECT_EQ(Io(d, Rw16(kSynchronizeCache16, 0, 0)).kind, DiskIo::Kind::kFlush);
  ExpectCheck(Reply(d, Rw16(kSynchronizeCache16, 4000, 0)),
              kSenseLbaOutOfRange);
  EXPECT_EQ(Reply(d, Rw16(kVerify16, 0, 2048)).status, kScsiGood);
  EXPECT_EQ(Reply(d, {kTestUnitReady, 0, 0, 0, 0, 0}).status, kScsiGood);
  EXPECT_EQ(Reply(d, {kStartStopUnit, 0, 0, 0, 1, 0}).status, kScsiGood);
  ScsiReply sense = Reply(d, {kRequestSense, 0, 0, 0, 252, 0});
  ASSERT_EQ(sense.data.size(), 18u);
  EXPECT_EQ(sense.data[0], 0x70);
  EXPECT_EQ(sense.data[2], 0);
  ExpectCheck(Reply(d, {0xC7, 0, 0, 0, 0, 0}), kSenseInvalidOpcode);
  ExpectCheck(Reply(d, {kReportLuns, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}),
              kSenseInvalidOpcode);  // the controller answers it
}

std::vector<uint8_t> UnmapParams(
    std::vector<std::pair<uint64_t, uint32_t>> ranges) {
  std::vector<uint8_t> p(8 + 16 * ranges.size(), 0);
  uint32_t desc = static_cast<uint32_t>(16 * ranges.size());
  p[0] = static_cast<uint8_t>((desc + 6) >> 8);
  p[1] = static_cast<uint8_t>(desc + 6);
  p[2] = static_cast<uint8_t>(desc >> 8);
  p[3] = static_cast<uint8_t>(desc);
  for (size_t i = 0; i < ranges.size(); ++i) {
    uint8_t* d = &p[8 + 16 * i];
    for (int b = 0; b < 8; ++b)
      d[b] = static_cast<uint8_t>(ranges[i].first >> (56 - 8 * b));
    for (int b = 0; b < 4; ++b)
      d[8 + b] = static_cast<uint8_t>(ranges[i].second >> (24 - 8 * b));
  }
  return p;
}
std::vector<uint8_t> UnmapCdb(uint16_t len) {
  return {kUnmap,
          0,
          0,
          0,
          0,
          0,
          0,
          static_cast<uint8_t>(len >> 8),
          static_cast<uint8_t>(len),
          0};
}

TEST(ScsiDiskTest, Unmap) {
  ScsiDisk d(Props(2048));
  std::vector<uint8_t> p = UnmapParams({{8, 16}, {100, 0}, {2040, 8}});
  EXPECT_EQ(ScsiDisk::ParameterBytes(UnmapCdb(p.size())), p.size());
  DiskIo io = Io(d, UnmapCdb(p.size()), p.size(), p);
  EXPECT_EQ(io.kind, DiskIo::Kind::kUnmap);
  EXPECT_EQ(io.unmap, (std::vector<ByteRange>{{8 * 512, 16 * 512},
                                              {2040 * 512, 8 * 512}}));
  std::vector<uint8_t> past = UnmapParams({{2040, 9}});
  ExpectCheck(Reply(d, UnmapCdb(past.size()), past.size(), past),
              kSenseLbaOutOfRange);
  std::vector<uint8_t> odd = p;
  odd[3] = 15;  // not a whole number of descriptors
  ExpectCheck(Reply(d, UnmapCdb(odd.size()), odd.size(), odd),
              kSenseInvalidFieldInParameterList);
  std::vector<uint8_t> longer = p;
  longer[3] = 64;  // more descriptors than the list holds
  ExpectCheck(Reply(d, UnmapCdb(longer.size()), longer.size(), longer),
              kSenseParameterListLengthError);
  ExpectCheck(Reply(d, UnmapCdb(4), 4, {0, 0, 0, 0}),
              kSenseParameterListLengthError);
  // The guest's buffer is shorter than the parameter list it announced.
  ExpectCheck(Reply(d, UnmapCdb(p.size()), 8, {p.begin(), p.begin() + 8}),
              kSenseParameterListLengthError);
  EXPECT_EQ(Reply(d, UnmapCdb(0), 0).status, kScsiGood);
  ExpectCheck(
      Reply(ScsiDisk(Props(2048, true)), UnmapCdb(p.size()), p.size(), p),
      kSenseWriteProtected);
  ExpectCheck(Reply(ScsiDisk(Props(2048, false, false)), UnmapCdb(p.size()),
                    p.size(), p),
              kSenseInvalidOpcode);
}

TEST(ScsiDiskTest, ReportLunsAndAbsentLun) {
  std::vector<uint8_t> cdb = {kReportLuns, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
  const uint8_t luns[] = {3, 0, 1};
  ScsiReply r = ReportLuns(cdb, 4096, luns);
  ASSERT_EQ(r.data.size(), 8u + 24);
  EXPECT_EQ(r.data[3], 24);
  EXPECT_EQ(r.data[9], 0);
  EXPECT_EQ(r.data[17], 1);
  EXPECT_EQ(r.data[25], 3);
  EXPECT_EQ(ReportLuns(cdb, 16, luns).data.size(), 16u);
  ScsiReply none =
      NoLunInquiry(std::vector<uint8_t>{kInquiry, 0, 0, 0, 36, 0}, 4096);
  ASSERT_EQ(none.data.size(), 36u);
  EXPECT_EQ(none.data[0], 0x7F);
  ExpectCheck(
      NoLunInquiry(std::vector<uint8_t>{kTestUnitReady, 0, 0, 0, 0, 0}, 0),
      kSenseLunNotSupported);
}

TEST(ScsiSenseTest, FixedFormatRoundTrip) {
  std::array<uint8_t, kFixedSenseSize> b =
      BuildFixedSense(kSenseWriteProtected);
  EXPECT_EQ(b[0], 0x70);
  EXPECT_EQ(b[2], 0x07);
  EXPECT_EQ(b[7], 10);
  EXPECT_EQ(b[12], 0x27);
  EXPECT_EQ(b[13], 0x00);
  Sense back;
  ASSERT_TRUE(ParseSense(b.data(), b.size(), &back));
  EXPECT_EQ(back, kSenseWriteProtected);
  Sense lba = kSenseLbaOutOfRange;
  lba.info_valid = true;
  lba.info = 0x12345678;
  b = BuildFixedSense(lba);
  EXPECT_EQ(b[0], 0xF0);
  ASSERT_TRUE(ParseSense(b.data(), b.size(), &back));
  EXPECT_EQ(back, lba);
  uint8_t junk[4] = {0x12, 0, 0, 0};
  EXPECT_FALSE(ParseSense(junk, sizeof(junk), &back));
}

}  // namespace
}  // namespace vsp::storage
