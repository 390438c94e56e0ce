#include "vmwp/vsp/storage/scsi_cdb.h"

#include <vector>

#include "gtest/gtest.h"

namespace vsp::storage {
namespace {

Cdb Ok(std::vector<uint8_t> bytes) {
  std::variant<Cdb, Sense> r = ParseCdb(bytes);
  EXPECT_TRUE(std::holds_alternative<Cdb>(r));
  return std::holds_alternative<Cdb>(r) ? std::get<Cdb>(r) : Cdb{};
}
Sense Bad(std::vector<uint8_t> bytes) {
  std::variant<Cdb, Sense> r = ParseCdb(bytes);
  EXPECT_TRUE(std::holds_alternative<Sense>(r));
  return std::holds_alternative<Sense>(r) ? std::get<Sense>(r) : Sense{};
}

TEST(ScsiCdbTest, GroupLengths) {
  EXPECT_EQ(CdbLengthForOpcode(kInquiry), 6u);
  EXPECT_EQ(CdbLengthForOpcode(kRead10), 10u);
  EXPECT_EQ(CdbLengthForOpcode(kModeSense10), 10u);
  EXPECT_EQ(CdbLengthForOpcode(kRead16), 16u);
  EXPECT_EQ(CdbLengthForOpcode(kReportLuns), 12u);
  EXPECT_EQ(CdbLengthForOpcode(0x7F), 0u);
  EXPECT_EQ(CdbLengthForOpcode(0xC0), 0u);
}

TEST(ScsiCdbTest, UnknownAndShort) {
  EXPECT_EQ(Bad({}), kSenseInvalidOpcode);
  EXPECT_EQ(Bad({0xC5, 0, 0, 0, 0, 0}), kSenseInvalidOpcode);  // vendor
  EXPECT_EQ(Bad({0x7F, 0, 0, 0, 0, 0, 0, 0, 0, 0}), kSenseInvalidOpcode);
  EXPECT_EQ(Bad({kWriteSame16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
            kSenseInvalidOpcode);
  EXPECT_EQ(Bad({kModeSelect6, 0, 0, 0, 0, 0}), kSenseInvalidOpcode);
  EXPECT_EQ(Bad({kRead10, 0, 0, 0}), kSenseInvalidFieldInCdb);  // too short
}

TEST(ScsiCdbTest, ReadWrite) {
  Cdb r6 = Ok({kRead6, 0x1F, 0xFF, 0xFE, 0, 0});
  EXPECT_EQ(r6.kind, CdbKind::kRead);
  EXPECT_EQ(r6.lba, 0x1FFFFEu);
  EXPECT_EQ(r6.blocks, 256u);  // 0 means 256
  Cdb w10 = Ok({kWrite10, 0x08, 0x12, 0x34, 0x56, 0x78, 0, 0x01, 0x00, 0});
  EXPECT_EQ(w10.kind, CdbKind::kWrite);
  EXPECT_EQ(w10.lba, 0x12345678u);
  EXPECT_EQ(w10.blocks, 256u);
  EXPECT_TRUE(w10.fua);
  Cdb r16 = Ok({kRead16, 0, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                0x00, 0x01, 0x00, 0x00, 0, 0});
  EXPECT_EQ(r16.lba, 0x0102030405060708ull);
  EXPECT_EQ(r16.blocks, 0x10000u);
  Cdb r12 = Ok({kRead12, 0, 0, 0, 0, 9, 0, 0, 0, 3, 0, 0});
  EXPECT_EQ(r12.lba, 9u);
  EXPECT_EQ(r12.blocks, 3u);
  // RDPROTECT: no protection information on this disk.
  EXPECT_EQ(Bad({kRead10, 0x20, 0, 0, 0, 0, 0, 0, 1, 0}),
            kSenseInvalidFieldInCdb);
}

TEST(ScsiCdbTest, InquiryAndModeSense) {
  Cdb std = Ok({kInquiry, 0, 0, 0, 36, 0});
  EXPECT_FALSE(std.evpd);
  EXPECT_EQ(std.allocation_length, 36u);
  Cdb vpd = Ok({kInquiry, 1, 0x83, 0x01, 0x00, 0});
  EXPECT_TRUE(vpd.evpd);
  EXPECT_EQ(vpd.page_code, 0x83);
  EXPECT_EQ(vpd.allocation_length, 256u);
  EXPECT_EQ(Bad({kInquiry, 0, 0x80, 0, 36, 0}), kSenseInvalidFieldInCdb);
  EXPECT_EQ(Bad({kInquiry, 2, 0, 0, 36, 0}), kSenseInvalidFieldInCdb);
  Cdb ms6 = Ok({kModeSense6, 0x08, 0x48, 0, 192, 0});
  EXPECT_TRUE(ms6.dbd);
  EXPECT_EQ(ms6.page_control, 1);
  EXPECT_EQ(ms6.page_code, 0x08);
  EXPECT_EQ(ms6.allocation_length, 192u);
  Cdb ms10 = Ok({kModeSense10, 0, 0x3F, 0xFF, 0, 0, 0, 0x02, 0x00, 0});
  EXPECT_TRUE(ms10.mode_sense_10);
  EXPECT_EQ(ms10.subpage, 0xFF);
  EXPECT_EQ(ms10.allocation_length, 512u);
}

TEST(ScsiCdbTest, CapacityLunsSyncUnmap) {
  Cdb rc16 = Ok({kServiceActionIn16, kSaReadCapacity16, 0, 0, 0, 0, 0, 0, 0, 0,
                 0, 0, 0, 32, 0, 0});
  EXPECT_EQ(rc16.kind, CdbKind::kReadCapacity16);
  EXPECT_EQ(rc16.allocation_length, 32u);
  EXPECT_EQ(Bad({kServiceActionIn16, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32,
                 0, 0}),
            kSenseInvalidFieldInCdb);
  Cdb luns = Ok({kReportLuns, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0});
  EXPECT_EQ(luns.allocation_length, 0x1000u);
  EXPECT_EQ(Bad({kReportLuns, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0}),
            kSenseInvalidFieldInCdb);
  Cdb sync = Ok({kSynchronizeCache10, 0x02, 0, 0, 0, 8, 0, 0, 4, 0});
  EXPECT_EQ(sync.kind, CdbKind::kSynchronizeCache);
  EXPECT_EQ(sync.lba, 8u);
  EXPECT_EQ(sync.blocks, 4u);
  Cdb unmap = Ok({kUnmap, 0, 0, 0, 0, 0, 0, 0, 24, 0});
  EXPECT_EQ(unmap.allocation_length, 24u);
  EXPECT_EQ(Bad({kUnmap, 1, 0, 0, 0, 0, 0, 0, 24, 0}), kSenseInvalidFieldInCdb);
}

}  // namespace
}  // namespace vsp::storage
