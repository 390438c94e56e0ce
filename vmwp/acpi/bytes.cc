#include "vmwp/acpi/bytes.h"

namespace vmwp::acpi {

void AppendLe(Bytes& out, uint64_t value, size_t width) {
  for (size_t i = 0; i < width; ++i) {
    out.push_back(static_cast<uint8_t>(value >> (8 * i)));
  }
}

void AppendFixedString(Bytes& out, absl::string_view text, size_t width,
                       char pad) {
  for (size_t i = 0; i < width; ++i) {
    out.push_back(static_cast<uint8_t>(i < text.size() ? text[i] : pad));
  }
}

void WriteLe(Bytes& out, size_t offset, uint64_t value, size_t width) {
  for (size_t i = 0; i < width; ++i) {
    out.at(offset + i) = static_cast<uint8_t>(value >> (8 * i));
  }
}

uint64_t ReadLe(absl::Span<const uint8_t> in, size_t offset, size_t width) {
  uint64_t value = 0;
  for (size_t i = 0; i < width; ++i) {
    value |= static_cast<uint64_t>(in.at(offset + i)) << (8 * i);
  }
  return value;
}

uint8_t ByteSum(absl::Span<const uint8_t> data) {
  uint8_t sum = 0;
  for (uint8_t b : data) sum = static_cast<uint8_t>(sum + b);
  return sum;
}

uint8_t ChecksumFor(absl::Span<const uint8_t> data) {
  return static_cast<uint8_t>(0x100 - ByteSum(data));
}

}  // namespace vmwp::acpi
