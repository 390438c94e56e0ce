#include "vmwp/acpi/resource_template.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vmwp::acpi::aml {
namespace {

using ::testing::ElementsAre;

TEST(IoPortsTest, FixedRangeDecode16) {
  EXPECT_THAT(*IoPorts(0x3F8, 8),
              ElementsAre(0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08));
  EXPECT_FALSE(IoPorts(0xFFFF, 2).ok());
  EXPECT_FALSE(IoPorts(0x60, 0).ok());
}

TEST(IrqNoFlagsTest, MaskOfIsaIrqs) {
  EXPECT_THAT(*IrqNoFlags({4}), ElementsAre(0x22, 0x10, 0x00));
  EXPECT_THAT(*IrqNoFlags({1, 8}), ElementsAre(0x22, 0x02, 0x01));
  EXPECT_FALSE(IrqNoFlags({16}).ok());
}

TEST(ResourceTemplateTest, BufferEndsWithAChecksummedEndTag) {
  Term t = ResourceTemplate({IoPorts(0x70, 2), IrqNoFlags({8})});
  ASSERT_TRUE(t.ok());
  // Buffer: 0x11, PkgLength, BufferSize 0x0A 13, then 8 + 3 + 2 descriptor
  // bytes.
  ASSERT_EQ(t->size(), 4u + 13u);
  EXPECT_THAT(Bytes(t->begin(), t->begin() + 4),
              ElementsAre(0x11, 0x10, 0x0A, 13));
  const Bytes descriptors(t->begin() + 4, t->end());
  EXPECT_EQ(descriptors[11], 0x79);
  EXPECT_EQ(ByteSum(descriptors), 0);
}

TEST(ResourceTemplateTest, PassesErrorsUp) {
  EXPECT_FALSE(ResourceTemplate({IrqNoFlags({20})}).ok());
}

}  // namespace
}  // namespace vmwp::acpi::aml
