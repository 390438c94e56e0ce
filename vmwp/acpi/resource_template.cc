#include "vmwp/acpi/resource_template.h"

#include "absl/strings/str_cat.h"

namespace vmwp::acpi::aml {
namespace {

// Small resource descriptor tags: bit 7 clear, item name in bits 6-3, length in
// bits 2-0.
constexpr uint8_t SmallTag(uint8_t item, uint8_t length) {
  return static_cast<uint8_t>((item << 3) | length);
}
constexpr uint8_t kIrqItem = 0x04;
constexpr uint8_t kIoItem = 0x08;
constexpr uint8_t kEndTagItem = 0x0F;
constexpr uint8_t kIoDecode16 = 0x01;

}  // namespace

Term IoPorts(uint16_t base, uint8_t length) {
  if (length == 0 || base + length > 0x10000) {
    return absl::InvalidArgumentError(
        absl::StrCat("AML: I/O range at ", base, " of ", length,
                     " ports does not fit the 16-bit port space"));
  }
  Bytes out{SmallTag(kIoItem, 7), kIoDecode16};
  AppendU16(out, base);  // minimum base
  AppendU16(out, base);  // maximum base: a fixed range
  AppendU8(out, 1);      // alignment
  AppendU8(out, length);
  return out;
}

Term IrqNoFlags(const std::vector<uint8_t>& irqs) {
  uint16_t mask = 0;
  for (uint8_t irq : irqs) {
    if (irq > 15) {
      return absl::InvalidArgumentError(
          absl::StrCat("AML: IRQ ", irq, " is not an ISA IRQ"));
    }
    mask |= static_cast<uint16_t>(1u << irq);
  }
  // The 2-byte form (no information byte) means edge-triggered, active-high,
  // exclusive.
  Bytes out{SmallTag(kIrqItem, 2)};
  AppendU16(out, mask);
  return out;
}

Term ResourceTemplate(const std::vector<Term>& descriptors) {
  Bytes data;
  for (const Term& d : descriptors) {
    if (!d.ok()) return d.status();
    data.insert(data.end(), d->begin(), d->end());
  }
  data.push_back(SmallTag(kEndTagItem, 1));
  data.push_back(ChecksumFor(data));
  return Buffer(data);
}

}  // namespace vmwp::acpi::aml
