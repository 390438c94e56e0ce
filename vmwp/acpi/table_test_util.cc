#include "vmwp/acpi/table_test_util.h"

#include <algorithm>
#include <string>

#include "vmwp/acpi/bytes.h"
#include "vmwp/acpi/sdt.h"

namespace vmwp::acpi {

::testing::AssertionResult IsValidSdt(absl::Span<const uint8_t> table,
                                      absl::string_view signature) {
  if (table.size() < kSdtHeaderSize) {
    return ::testing::AssertionFailure()
           << "table of " << table.size() << " bytes has no header";
  }
  const std::string actual(table.begin(), table.begin() + 4);
  if (actual != signature) {
    return ::testing::AssertionFailure()
           << "signature " << actual << ", want " << signature;
  }
  const uint32_t length = U32At(table, kSdtLengthOffset);
  if (length != table.size()) {
    return ::testing::AssertionFailure()
           << signature << " header length " << length << ", table is "
           << table.size();
  }
  if (uint8_t sum = ByteSum(table); sum != 0) {
    return ::testing::AssertionFailure()
           << signature << " bytes sum to " << int{sum};
  }
  return ::testing::AssertionSuccess();
}

uint8_t U8At(absl::Span<const uint8_t> t, size_t offset) {
  return ReadLe(t, offset, 1);
}
uint16_t U16At(absl::Span<const uint8_t> t, size_t offset) {
  return ReadLe(t, offset, 2);
}
uint32_t U32At(absl::Span<const uint8_t> t, size_t offset) {
  return ReadLe(t, offset, 4);
}
uint64_t U64At(absl::Span<const uint8_t> t, size_t offset) {
  return ReadLe(t, offset, 8);
}

bool Contains(absl::Span<const uint8_t> haystack,
              absl::Span<const uint8_t> needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(),
                     needle.end()) != haystack.end();
}

}  // namespace vmwp::acpi
