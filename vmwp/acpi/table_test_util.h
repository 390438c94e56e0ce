#ifndef HVSTACK_VMWP_ACPI_TABLE_TEST_UTIL_H_
#define HVSTACK_VMWP_ACPI_TABLE_TEST_UTIL_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "gtest/gtest.h"

namespace vmwp::acpi {

// Checks an SDT's signature, that its header's length is `table`'s size and
// that its bytes sum to zero.
::testing::AssertionResult IsValidSdt(absl::Span<const uint8_t> table,
                                      absl::string_view signature);

// Little-endian field readers for assertions.
uint8_t U8At(absl::Span<const uint8_t> t, size_t offset);
uint16_t U16At(absl::Span<const uint8_t> t, size_t offset);
uint32_t U32At(absl::Span<const uint8_t> t, size_t offset);
uint64_t U64At(absl::Span<const uint8_t> t, size_t offset);

// Whether `needle` occurs in `haystack`.
bool Contains(absl::Span<const uint8_t> haystack,
              absl::Span<const uint8_t> needle);

}  // namespace vmwp::acpi

#endif  // HVSTACK_VMWP_ACPI_TABLE_TEST_UTIL_H_
