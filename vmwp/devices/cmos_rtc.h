#ifndef HVSTACK_VMWP_DEVICES_CMOS_RTC_H_
#define HVSTACK_VMWP_DEVICES_CMOS_RTC_H_

#include <array>
#include <cstdint>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "vid/io_handler.h"
#include "vmwp/devices/saved_state.pb.h"

namespace vmwp {

// The PC's MC146818-compatible CMOS RTC at ports 0x70 (index, bit 7 = NMI
// disable) and 0x71 (data), with 128 bytes of CMOS RAM.
//
// The clock is the host's wall clock (UTC) plus an offset, 0 when the VM is
// created: it advances with host time and never drifts from it. Writes to the
// time registers change the offset, not the host clock. While register B's SET
// bit is on, the time registers hold what the guest wrote (updates stop); when
// SET goes off the clock resumes from those values, which is how Linux's
// mc146818_set_time sets it.
//
// Registers: 0x00 seconds, 0x02 minutes, 0x04 hours, 0x06 day of week
// (1 = Sunday; derived from the date, writes are held only while SET), 0x07
// day of month, 0x08 month, 0x09 year (two digits), 0x32 century; all in BCD
// or binary per B.DM, hours in 24 h or 12 h (bit 7 = PM) per B.24H. 0x01/0x03/
// 0x05 alarm registers (storage; alarms are not raised). 0x0A register A: bit 7
// UIP is set during the last 244 us of every second (when an update is about to
// change the time registers), while the divider runs normally (bits 6-4 =
// 010) and SET is off; the other bits are storage (default 0x26). 0x0B
// register B (default 0x02: 24 h, BCD). 0x0C register C: flags, cleared by
// reading: UF once a second boundary passed since the last read, PF once a
// periodic-rate period passed (rate select in A), IRQF if one of them is set
// and enabled in B; AF is never set. 0x0D register D: 0x80 (valid RAM and
// time). Everything else is CMOS RAM. No interrupt (IRQ 8) is raised yet.
//
// Thread-safe.
class CmosRtc : public vid::PortIoHandler {
 public:
  static constexpr uint16_t kIndexPort = 0x70;
  static constexpr uint16_t kDataPort = 0x71;
  static constexpr uint16_t kPortCount = 2;

  static constexpr uint8_t kSeconds = 0x00;
  static constexpr uint8_t kSecondsAlarm = 0x01;
  static constexpr uint8_t kMinutes = 0x02;
  static constexpr uint8_t kMinutesAlarm = 0x03;
  static constexpr uint8_t kHours = 0x04;
  static constexpr uint8_t kHoursAlarm = 0x05;
  static constexpr uint8_t kDayOfWeek = 0x06;
  static constexpr uint8_t kDayOfMonth = 0x07;
  static constexpr uint8_t kMonth = 0x08;
  static constexpr uint8_t kYear = 0x09;
  static constexpr uint8_t kRegA = 0x0A;
  static constexpr uint8_t kRegB = 0x0B;
  static constexpr uint8_t kRegC = 0x0C;
  static constexpr uint8_t kRegD = 0x0D;
  static constexpr uint8_t kCentury = 0x32;

  static constexpr uint8_t kAUip = 0x80;
  static constexpr uint8_t kADefault = 0x26;  // 32.768 kHz divider, 1024 Hz
  static constexpr uint8_t kBSet = 0x80;
  static constexpr uint8_t kBPie = 0x40;
  static constexpr uint8_t kBAie = 0x20;
  static constexpr uint8_t kBUie = 0x10;
  static constexpr uint8_t kBBinary = 0x04;  // DM
  static constexpr uint8_t kB24Hour = 0x02;
  static constexpr uint8_t kBDefault = kB24Hour;
  static constexpr uint8_t kCIrqf = 0x80;
  static constexpr uint8_t kCPf = 0x40;
  static constexpr uint8_t kCAf = 0x20;
  static constexpr uint8_t kCUf = 0x10;
  static constexpr uint8_t kDValid = 0x80;

  // How long before each second's update UIP is set (8 cycles of 32.768 kHz).
  static constexpr absl::Duration kUipWindow = absl::Microseconds(244);

  // What a PC keeps across a reset (battery-backed): CMOS RAM (registers A, B
  // and the alarms included) and where the clock stands relative to the host.
  // The worker carries it across an in-place reboot.
  struct Persistent {
    std::array<uint8_t, 128> ram{};
    absl::Duration offset;
  };

  using Clock = std::function<absl::Time()>;

  // A fresh RTC: the host's time, default A and B, RAM zeroed.
  explicit CmosRtc(Clock clock = &absl::Now);
  CmosRtc(const Persistent& saved, Clock clock = &absl::Now);

  Persistent Save() const;

  // Save and restore (issue 14): RAM, clock offset, held time registers,
  // index. The clock keeps running while the VM is saved (the offset is to
  // the host's wall clock). InvalidArgument names a bad field.
  hvstack::saved::CmosRtcState SaveState() const;
  absl::Status RestoreState(const hvstack::saved::CmosRtcState& state);

  uint32_t PortRead(uint16_t port, uint8_t size) override;
  void PortWrite(uint16_t port, uint8_t size, uint32_t value) override;

  // For tests and diagnostics.
  absl::Time GuestTime() const;
  bool nmi_disabled() const;

 private:
  struct Fields {
    int64_t year = 2000;
    int month = 1, day = 1, hour = 0, minute = 0, second = 0, weekday = 1;
  };

  uint8_t Read(uint8_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Write(uint8_t index, uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Time NowLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  Fields CurrentFields() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  uint8_t Encode(int value) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  int Decode(uint8_t value) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  uint8_t EncodeHour(int hour) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  int DecodeHour(uint8_t value) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Sets the clock so that it reads `fields` now.
  void SetClock(const Fields& fields) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint8_t ReadRegC() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock clock_;
  mutable absl::Mutex mu_;
  std::array<uint8_t, 128> ram_ ABSL_GUARDED_BY(mu_){};
  absl::Duration offset_ ABSL_GUARDED_BY(mu_);
  // Time registers while SET is on.
  Fields held_ ABSL_GUARDED_BY(mu_);
  uint8_t index_ ABSL_GUARDED_BY(mu_) = 0;
  bool nmi_disabled_ ABSL_GUARDED_BY(mu_) = false;
  // For register C's lazily computed flags.
  absl::Time last_c_read_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vmwp

#endif  // HVSTACK_VMWP_DEVICES_CMOS_RTC_H_
