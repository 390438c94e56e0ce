#ifndef HVSTACK_VMWP_DEVICES_ACPI_POWER_PORT_H_
#define HVSTACK_VMWP_DEVICES_ACPI_POWER_PORT_H_

#include <cstdint>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "vid/io_handler.h"
#include "vmwp/devices/saved_state.pb.h"

namespace vmwp {

// The ACPI PM1a control register (16 bits at port 0x604, where QEMU's q35 and
// our future FADT put it). Writing SLP_EN with SLP_TYP == 5 (the S5 "soft off"
// type our _S5_ object will advertise) asks the VM to power off. Other sleep
// states are not supported and are ignored.
class AcpiPowerPort : public vid::PortIoHandler {
 public:
  static constexpr uint16_t kPm1aControlPort = 0x604;
  static constexpr uint16_t kSlpEn = 1u << 13;
  static constexpr uint16_t kSlpTypShift = 10;
  static constexpr uint16_t kSlpTypMask = 0x7u << kSlpTypShift;
  static constexpr uint16_t kSlpTypS5 = 5;

  // `power_off` runs on the VP thread that wrote the register, without the
  // port's lock held.
  explicit AcpiPowerPort(std::function<void()> power_off,
                         uint16_t port = kPm1aControlPort);

  // vid::PortIoHandler. Byte accesses to either half of the register are
  // merged.
  uint32_t PortRead(uint16_t port, uint8_t size) override;
  void PortWrite(uint16_t port, uint8_t size, uint32_t value) override;

  // Save and restore (issue 14).
  hvstack::saved::AcpiPowerPortState SaveState();
  absl::Status RestoreState(const hvstack::saved::AcpiPowerPortState& state);

 private:
  const uint16_t port_;
  const std::function<void()> power_off_;
  absl::Mutex mu_;
  uint16_t value_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace vmwp

#endif  // HVSTACK_VMWP_DEVICES_ACPI_POWER_PORT_H_
