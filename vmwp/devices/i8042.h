#ifndef HVSTACK_VMWP_DEVICES_I8042_H_
#define HVSTACK_VMWP_DEVICES_I8042_H_

#include <cstdint>
#include <deque>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "vid/io_handler.h"
#include "vmwp/devices/saved_state.pb.h"

namespace vmwp {

// The PC's i8042 keyboard controller at ports 0x60 (data) and 0x64
// (status/command), with a minimal AT keyboard behind it and no PS/2 mouse.
// Enough for Linux's i8042 and atkbd drivers to probe without errors, and for
// the reset line: pulsing output-port bit 0 (command 0xFE, what Linux's
// `reboot` falls back to and what our FADT names as the reset register) or
// writing it low with command 0xD1 calls the reset callback.
//
// Controller commands (port 0x64): 0x20-0x3F read controller RAM (0x20: the
// command byte, CTR), 0x60-0x7F write it, 0xA7/0xA8 disable/enable AUX,
// 0xA9 AUX interface test (0x00), 0xAA self-test (0x55), 0xAB keyboard
// interface test (0x00), 0xAD/0xAE disable/enable keyboard, 0xC0 read input
// port, 0xD0/0xD1 read/write output port, 0xD2/0xD3 write the keyboard/AUX
// output buffer (as if the device had sent the byte; 0xD3 is Linux's AUX
// loopback probe), 0xD4 write to the AUX device, 0xDD/0xDF A20 (ignored: A20
// is always on), 0xE0 read test inputs, 0xF0-0xFF pulse output lines (bit n
// clear = pulse line n; line 0 is reset). Unknown commands are ignored.
//
// Data written to port 0x60 without a pending command goes to the keyboard,
// which answers 0xFA (ACK) to every command it knows, plus: 0xFF reset -> FA
// AA; 0xF2 identify -> FA AB 83 (AB 41 when the controller translates, as a
// real one does); 0xEE echo -> EE; 0xF0 n (scan code set; n = 0 reads it back);
// 0xED n (LEDs), 0xF3 n (typematic) take a parameter byte, also ACKed; unknown
// bytes get 0xFE (resend). Bytes for the AUX device (0xD4) are answered 0xFE
// with the timeout bit set: nothing is plugged into the AUX port.
//
// Interrupts: IRQ 1 while the head of the output buffer is keyboard data and
// CTR bit 0 is set; IRQ 12 while it is AUX data and CTR bit 1 is set. Both are
// levels computed after each access; the callbacks run only on a change.
//
// Thread-safety: port accesses from any VP thread. The interrupt callbacks run
// with the lock held (ordered level changes) and must not call back; the reset
// callback runs without it.
class I8042 : public vid::PortIoHandler {
 public:
  static constexpr uint16_t kDataPort = 0x60;
  static constexpr uint16_t kCommandPort = 0x64;

  // Status register (read at 0x64).
  static constexpr uint8_t kStatusOutputFull = 0x01;
  static constexpr uint8_t kStatusInputFull = 0x02;
  static constexpr uint8_t kStatusSystemFlag = 0x04;
  static constexpr uint8_t kStatusLastWasCommand = 0x08;
  static constexpr uint8_t kStatusKeylockOff = 0x10;  // 1: not inhibited
  static constexpr uint8_t kStatusAuxData = 0x20;
  static constexpr uint8_t kStatusTimeout = 0x40;
  static constexpr uint8_t kStatusParity = 0x80;

  // Controller command byte (CTR).
  static constexpr uint8_t kCtrKbdInt = 0x01;
  static constexpr uint8_t kCtrAuxInt = 0x02;
  static constexpr uint8_t kCtrSystemFlag = 0x04;
  static constexpr uint8_t kCtrIgnoreKeylock = 0x08;
  static constexpr uint8_t kCtrKbdDisable = 0x10;
  static constexpr uint8_t kCtrAuxDisable = 0x20;
  static constexpr uint8_t kCtrTranslate = 0x40;
  // What a PC BIOS leaves: keyboard interrupt on, system flag, AUX disabled,
  // translation on.
  static constexpr uint8_t kDefaultCtr =
      kCtrKbdInt | kCtrSystemFlag | kCtrAuxDisable | kCtrTranslate;

  // Output port bits.
  static constexpr uint8_t kOutResetLine = 0x01;  // 0 holds the CPU in reset
  static constexpr uint8_t kOutA20 = 0x02;

  // Bound of the output buffer; beyond it bytes are dropped (a guest that
  // never reads cannot make the worker grow).
  static constexpr size_t kMaxOutput = 64;

  using Line = std::function<void(bool asserted)>;

  explicit I8042(std::function<void()> reset);

  // Optional; IRQ 1 (keyboard) and IRQ 12 (AUX).
  void SetInterruptLines(Line kbd, Line aux);

  uint32_t PortRead(uint16_t port, uint8_t size) override;
  void PortWrite(uint16_t port, uint8_t size, uint32_t value) override;

  // Save and restore (issue 14). Restore does not drive the interrupt lines
  // (the saved irqchip has their levels); InvalidArgument names a bad field.
  hvstack::saved::I8042State SaveState() const;
  absl::Status RestoreState(const hvstack::saved::I8042State& state);

  // For tests and diagnostics.
  uint8_t command_byte() const;
  uint64_t resets() const;

 private:
  struct OutByte {
    uint8_t value;
    bool aux;
    bool timeout = false;
  };
  // What the next data-port write is for.
  enum class Pending : uint8_t {
    kNone,
    kWriteRam,         // 0x60-0x7F; pending_ram_index_
    kWriteOutputPort,  // 0xD1
    kWriteKbdBuffer,   // 0xD2
    kWriteAuxBuffer,   // 0xD3
    kWriteAuxDevice,   // 0xD4
  };
  // What the keyboard expects as a parameter byte.
  enum class KbdPending : uint8_t { kNone, kLeds, kScanSet, kTypematic };

  uint8_t Status() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns true when the reset line was pulsed or pulled low.
  bool Command(uint8_t command) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Data(uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Keyboard(uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Push(uint8_t value, bool aux, bool timeout = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateInterrupts() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::function<void()> reset_;

  mutable absl::Mutex mu_;
  Line kbd_line_ ABSL_GUARDED_BY(mu_);
  Line aux_line_ ABSL_GUARDED_BY(mu_);
  bool kbd_level_ ABSL_GUARDED_BY(mu_) = false;
  bool aux_level_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<OutByte> output_ ABSL_GUARDED_BY(mu_);
  uint8_t last_read_ ABSL_GUARDED_BY(mu_) = 0;
  // Controller RAM; byte 0 is the CTR.
  uint8_t ram_[32] ABSL_GUARDED_BY(mu_) = {kDefaultCtr};
  uint8_t output_port_ ABSL_GUARDED_BY(mu_) = kOutResetLine | kOutA20;
  bool last_was_command_ ABSL_GUARDED_BY(mu_) = false;
  Pending pending_ ABSL_GUARDED_BY(mu_) = Pending::kNone;
  uint8_t pending_ram_index_ ABSL_GUARDED_BY(mu_) = 0;
  KbdPending kbd_pending_ ABSL_GUARDED_BY(mu_) = KbdPending::kNone;
  uint8_t scan_set_ ABSL_GUARDED_BY(mu_) = 2;
  bool kbd_scanning_ ABSL_GUARDED_BY(mu_) = true;
  uint64_t resets_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace vmwp

#endif  // HVSTACK_VMWP_DEVICES_I8042_H_
