#include "vmwp/devices/acpi_pm1_event.h"

#include "absl/strings/str_format.h"

namespace vmwp {

uint32_t AcpiPm1Event::PortRead(uint16_t port, uint8_t size) {
  absl::MutexLock lock(&mu_);
  // Byte i of the block: 0-1 PM1_STS (always 0), 2-3 PM1_EN.
  const uint32_t block = uint32_t{enable_} << 16;
  uint32_t result = 0;
  for (uint8_t i = 0; i < size; ++i) {
    const int offset = port - base_ + i;
    const uint32_t byte = offset >= 0 && offset < kPortCount
                              ? (block >> (8 * offset)) & 0xFF
                              : 0xFF;  // Beyond the block.
    result |= byte << (8 * i);
  }
  return result;
}

void AcpiPm1Event::PortWrite(uint16_t port, uint8_t size, uint32_t value) {
  absl::MutexLock lock(&mu_);
  for (uint8_t i = 0; i < size; ++i) {
    const int offset = port - base_ + i;
    const uint8_t byte = static_cast<uint8_t>(value >> (8 * i));
    if (offset == 2) enable_ = (enable_ & 0xFF00) | byte;
    if (offset == 3)
      enable_ = static_cast<uint16_t>((enable_ & 0x00FF) | byte << 8);
    // Offsets 0-1 (PM1_STS): write-1-to-clear of bits that are never set.
  }
}

uint16_t AcpiPm1Event::enable() const {
  absl::MutexLock lock(&mu_);
  return enable_;
}

hvstack::saved::AcpiPm1EventState AcpiPm1Event::SaveState() const {
  absl::MutexLock lock(&mu_);
  hvstack::saved::AcpiPm1EventState out;
  out.set_version(1);
  out.set_enable(enable_);
  return out;
}

absl::Status AcpiPm1Event::RestoreState(
    const hvstack::saved::AcpiPm1EventState& state) {
  if (state.version() != 1) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "saved PM1a event state format version %d; this worker reads 1",
        state.version()));
  }
  if (state.enable() > 0xFFFF) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "saved PM1_EN 0x%x is wider than 16 bits", state.enable()));
  }
  absl::MutexLock lock(&mu_);
  enable_ = static_cast<uint16_t>(state.enable());
  return absl::OkStatus();
}

}  // namespace vmwp
