#ifndef HVSTACK_VMWP_DEVICES_ACPI_PM1_EVENT_H_
#define HVSTACK_VMWP_DEVICES_ACPI_PM1_EVENT_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "vid/io_handler.h"
#include "vmwp/devices/saved_state.pb.h"

namespace vmwp {

// The ACPI PM1a event block (4 bytes at 0x600, the FADT's PM1a_EVT_BLK):
// PM1_STS (0x600-0x601) and PM1_EN (0x602-0x603). No fixed event (power
// button, timer overflow, wake) is ever raised, so PM1_STS always reads 0 and
// its write-1-to-clear writes change nothing; PM1_EN keeps what the guest
// writes (Linux enables the power-button event at boot). Accesses of 1, 2 or 4
// bytes at any offset inside the block are merged byte-wise.
class AcpiPm1Event : public vid::PortIoHandler {
 public:
  static constexpr uint16_t kPm1aEventPort = 0x600;
  static constexpr uint16_t kPortCount = 4;

  explicit AcpiPm1Event(uint16_t base = kPm1aEventPort) : base_(base) {}

  uint32_t PortRead(uint16_t port, uint8_t size) override;
  void PortWrite(uint16_t port, uint8_t size, uint32_t value) override;

  // Save and restore (issue 14).
  hvstack::saved::AcpiPm1EventState SaveState() const;
  absl::Status RestoreState(const hvstack::saved::AcpiPm1EventState& state);

  uint16_t enable() const;

 private:
  const uint16_t base_;
  mutable absl::Mutex mu_;
  uint16_t enable_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace vmwp

#endif  // HVSTACK_VMWP_DEVICES_ACPI_PM1_EVENT_H_
