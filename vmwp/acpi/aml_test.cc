#include "vmwp/acpi/aml.h"

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vmwp::acpi::aml {
namespace {

using ::testing::ElementsAre;

// Decodes a PkgLength as ACPICA does: the lead byte's top two bits count the
// following bytes; with none, its low 6 bits are the value, otherwise its low 4
// bits are.
size_t DecodePkgLength(const Bytes& b) {
  const size_t follow = b[0] >> 6;
  if (follow == 0) return b[0] & 0x3F;
  size_t value = b[0] & 0x0F;
  for (size_t i = 0; i < follow; ++i) value |= size_t{b[1 + i]} << (4 + 8 * i);
  return value;
}

TEST(PkgLengthTest, OneByteUpTo63Total) {
  EXPECT_THAT(*PkgLength(0), ElementsAre(0x01));
  EXPECT_THAT(*PkgLength(62), ElementsAre(0x3F));
}

TEST(PkgLengthTest, TwoBytesFrom64To4095Total) {
  // 63 bytes of content + 2 bytes of PkgLength = 65 = 0x041.
  EXPECT_THAT(*PkgLength(63), ElementsAre(0x41, 0x04));
  EXPECT_THAT(*PkgLength(4093), ElementsAre(0x4F, 0xFF));  // 0xFFF
}

TEST(PkgLengthTest, ThreeBytesFrom4096Total) {
  // 4094 + 3 = 4097 = 0x1001: 4094 + 2 = 4096 no longer fits 12 bits.
  EXPECT_THAT(*PkgLength(4094), ElementsAre(0x81, 0x00, 0x01));
  EXPECT_THAT(*PkgLength(0xFFFFF - 3), ElementsAre(0x8F, 0xFF, 0xFF));
}

TEST(PkgLengthTest, FourBytesUpTo28Bits) {
  EXPECT_THAT(*PkgLength(0xFFFFF - 2), ElementsAre(0xC1, 0x00, 0x00, 0x01));
  EXPECT_THAT(*PkgLength(kMaxPkgLength - 4),
              ElementsAre(0xCF, 0xFF, 0xFF, 0xFF));
  EXPECT_EQ(PkgLength(kMaxPkgLength - 3).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PkgLengthTest, EncodesContentPlusItselfEverywhereNearTheBoundaries) {
  for (size_t boundary : {size_t{63}, size_t{4096}, size_t{1} << 20}) {
    for (size_t content = boundary - 8; content < boundary + 8; ++content) {
      absl::StatusOr<Bytes> b = PkgLength(content);
      ASSERT_TRUE(b.ok()) << content;
      EXPECT_EQ(DecodePkgLength(*b), content + b->size()) << content;
      // Multi-byte encodings keep bits 5:4 of the lead byte clear.
      if (b->size() > 1) {
        EXPECT_EQ((*b)[0] & 0x30, 0) << content;
      }
    }
  }
}

TEST(NameStringTest, SegmentsPathsAndRoot) {
  EXPECT_THAT(*NameString("_S5_"), ElementsAre('_', 'S', '5', '_'));
  EXPECT_THAT(*NameString("_S5"), ElementsAre('_', 'S', '5', '_'));
  EXPECT_THAT(*NameString("\\_SB_"), ElementsAre('\\', '_', 'S', 'B', '_'));
  EXPECT_THAT(*NameString("\\_SB_.COM1"),
              ElementsAre('\\', 0x2E, '_', 'S', 'B', '_', 'C', 'O', 'M', '1'));
  EXPECT_THAT(*NameString("A.B.C"),
              ElementsAre(0x2F, 3, 'A', '_', '_', '_', 'B', '_', '_', '_', 'C',
                          '_', '_', '_'));
}

TEST(NameStringTest, RejectsInvalidSegments) {
  for (const char* bad : {"", "com1", "TOOLONG", "1ABC", "\\", "A..B", "A-B"}) {
    EXPECT_EQ(NameString(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(IntegerTest, UsesTheShortestEncoding) {
  EXPECT_THAT(Integer(0), ElementsAre(0x00));
  EXPECT_THAT(Integer(1), ElementsAre(0x01));
  EXPECT_THAT(Integer(5), ElementsAre(0x0A, 0x05));
  EXPECT_THAT(Integer(0xFF), ElementsAre(0x0A, 0xFF));
  EXPECT_THAT(Integer(0x3F8), ElementsAre(0x0B, 0xF8, 0x03));
  EXPECT_THAT(Integer(0xFEC00000), ElementsAre(0x0C, 0x00, 0x00, 0xC0, 0xFE));
  EXPECT_THAT(Integer(uint64_t{1} << 32),
              ElementsAre(0x0E, 0, 0, 0, 0, 1, 0, 0, 0));
  EXPECT_THAT(Integer(~uint64_t{0}), ElementsAre(0xFF));
}

TEST(StringTest, IsNulTerminated) {
  EXPECT_THAT(*String("VMBus"), ElementsAre(0x0D, 'V', 'M', 'B', 'u', 's', 0));
  EXPECT_FALSE(String(absl::string_view("a\0b", 3)).ok());
}

TEST(EisaIdTest, PacksLikeAslEisaId) {
  // EISAID("PNP0501") is 0x0105D041 in every PC's DSDT.
  EXPECT_THAT(*EisaId("PNP0501"), ElementsAre(0x0C, 0x41, 0xD0, 0x05, 0x01));
  EXPECT_THAT(*EisaId("PNP0303"), ElementsAre(0x0C, 0x41, 0xD0, 0x03, 0x03));
  EXPECT_THAT(*EisaId("PNP0B00"), ElementsAre(0x0C, 0x41, 0xD0, 0x0B, 0x00));
  for (const char* bad :
       {"pnp0501", "PNP050", "PNP05011", "PNP050G", "P1P0501"}) {
    EXPECT_FALSE(EisaId(bad).ok()) << bad;
  }
}

TEST(NameTest, NamesAnObject) {
  EXPECT_THAT(*Name("_UID", Integer(1)),
              ElementsAre(0x08, '_', 'U', 'I', 'D', 0x01));
}

TEST(PackageTest, CountsElementsAndLength) {
  // Package(4) {5, 0, 0, 0}: PkgLength 7 = itself + count + 0A 05 + three
  // ZeroOps.
  EXPECT_THAT(*Package({Integer(5), Integer(0), Integer(0), Integer(0)}),
              ElementsAre(0x12, 0x07, 0x04, 0x0A, 0x05, 0x00, 0x00, 0x00));
  EXPECT_FALSE(Package(std::vector<Term>(256, Integer(0))).ok());
}

TEST(BufferTest, CarriesItsSizeAndUsesLongPkgLengths) {
  EXPECT_THAT(*Buffer({0xAA, 0xBB}),
              ElementsAre(0x11, 0x05, 0x0A, 0x02, 0xAA, 0xBB));
  const Bytes data(100, 0x5A);
  Term b = Buffer(data);
  ASSERT_TRUE(b.ok());
  // 0x0A 0x64 + 100 bytes = 102 of content, + 2 bytes of PkgLength = 104 =
  // 0x68.
  EXPECT_THAT(Bytes(b->begin(), b->begin() + 5),
              ElementsAre(0x11, 0x48, 0x06, 0x0A, 100));
  EXPECT_EQ(b->size(), 1 + 2 + 2 + 100);
}

TEST(DeviceTest, ExtendedOpcodeNameAndBody) {
  EXPECT_THAT(*Device("COM1", {}),
              ElementsAre(0x5B, 0x82, 0x05, 'C', 'O', 'M', '1'));
  EXPECT_EQ(*Device("KBD", {Name("_UID", Integer(0))}),
            (Bytes{0x5B, 0x82, 0x0B, 'K', 'B', 'D', '_', 0x08, '_', 'U', 'I',
                   'D', 0x00}));
}

TEST(ScopeTest, WrapsTerms) {
  EXPECT_EQ(*Scope("\\_SB_", {Device("COM1", {})}),
            (Bytes{0x10, 0x0D, '\\', '_', 'S', 'B', '_', 0x5B, 0x82, 0x05, 'C',
                   'O', 'M', '1'}));
}

TEST(TermTest, TheFirstErrorInATreeComesOut) {
  Term t = Scope("\\_SB_", {Device("COM1", {Name("_HID", EisaId("bad"))})});
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), ::testing::HasSubstr("bad"));
}

}  // namespace
}  // namespace vmwp::acpi::aml
