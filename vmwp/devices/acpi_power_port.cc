#include "vmwp/devices/acpi_power_port.h"

#include <utility>

#include "absl/strings/str_format.h"

namespace vmwp {

AcpiPowerPort::AcpiPowerPort(std::function<void()> power_off, uint16_t port)
    : port_(port), power_off_(std::move(power_off)) {}

uint32_t AcpiPowerPort::PortRead(uint16_t port, uint8_t size) {
  absl::MutexLock lock(&mu_);
  if (port == port_) return size == 1 ? (value_ & 0xFF) : value_;
  if (port == port_ + 1 && size == 1) return value_ >> 8;
  return size == 1 ? 0xFF : (size == 2 ? 0xFFFF : 0xFFFFFFFFu);
}

void AcpiPowerPort::PortWrite(uint16_t port, uint8_t size, uint32_t value) {
  bool off = false;
  {
    absl::MutexLock lock(&mu_);
    uint16_t written;
    if (port == port_ && size >= 2) {
      written = static_cast<uint16_t>(value);
    } else if (port == port_ && size == 1) {
      written = static_cast<uint16_t>((value_ & 0xFF00) | (value & 0xFF));
    } else if (port == port_ + 1 && size == 1) {
      written =
          static_cast<uint16_t>((value_ & 0x00FF) | ((value & 0xFF) << 8));
    } else {
      return;
    }
    // SLP_EN is write-only: it triggers the transition and always reads back as
    // 0.
    value_ = written & ~kSlpEn;
    off = (written & kSlpEn) &&
          ((written & kSlpTypMask) >> kSlpTypShift) == kSlpTypS5;
  }
  if (off && power_off_) power_off_();
}

hvstack::saved::AcpiPowerPortState AcpiPowerPort::SaveState() {
  absl::MutexLock lock(&mu_);
  hvstack::saved::AcpiPowerPortState out;
  out.set_version(1);
  out.set_value(value_);
  return out;
}

absl::Status AcpiPowerPort::RestoreState(
    const hvstack::saved::AcpiPowerPortState& state) {
  if (state.version() != 1) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "saved PM1a control state format version %d; this worker reads 1",
        state.version()));
  }
  if (state.value() > 0xFFFF) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "saved PM1a_CNT 0x%x is wider than 16 bits", state.value()));
  }
  absl::MutexLock lock(&mu_);
  value_ = static_cast<uint16_t>(state.value());
  return absl::OkStatus();
}

}  // namespace vmwp
