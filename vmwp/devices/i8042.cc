#include "vmwp/devices/i8042.h"

#include <utility>

#include "absl/strings/str_format.h"

namespace vmwp {
namespace {

constexpr uint8_t kKbdAck = 0xFA;
constexpr uint8_t kKbdResend = 0xFE;
constexpr uint8_t kKbdSelfTestOk = 0xAA;
constexpr uint8_t kKbdEcho = 0xEE;

uint32_t OpenBus(uint8_t size) {
  return size >= 4 ? 0xFFFFFFFFu : (size == 2 ? 0xFFFFu : 0xFFu);
}

}  // namespace

I8042::I8042(std::function<void()> reset) : reset_(std::move(reset)) {}

void I8042::SetInterruptLines(Line kbd, Line aux) {
  absl::MutexLock lock(&mu_);
  kbd_line_ = std::move(kbd);
  aux_line_ = std::move(aux);
  kbd_level_ = aux_level_ = false;
  UpdateInterrupts();
}

uint8_t I8042::command_byte() const {
  absl::MutexLock lock(&mu_);
  return ram_[0];
}

uint64_t I8042::resets() const {
  absl::MutexLock lock(&mu_);
  return resets_;
}

uint8_t I8042::Status() const {
  uint8_t status = kStatusKeylockOff;
  if (ram_[0] & kCtrSystemFlag) status |= kStatusSystemFlag;
  if (last_was_command_) status |= kStatusLastWasCommand;
  if (!output_.empty()) {
    status |= kStatusOutputFull;
    if (output_.front().aux) status |= kStatusAuxData;
    if (output_.front().timeout) status |= kStatusTimeout;
  }
  // Input is consumed at once: IBF is never set.
  return status;
}

uint32_t I8042::PortRead(uint16_t port, uint8_t size) {
  if (size != 1) return OpenBus(size);
  absl::MutexLock lock(&mu_);
  if (port == kCommandPort) return Status();
  if (port != kDataPort) return OpenBus(size);
  // An empty buffer reads the last byte again, as the real latch does.
  if (!output_.empty()) {
    last_read_ = output_.front().value;
    output_.pop_front();
    UpdateInterrupts();
  }
  return last_read_;
}

void I8042::PortWrite(uint16_t port, uint8_t size, uint32_t value) {
  if (size != 1) return;
  bool reset = false;
  {
    absl::MutexLock lock(&mu_);
    const uint8_t byte = static_cast<uint8_t>(value);
    if (port == kCommandPort) {
      last_was_command_ = true;
      reset = Command(byte);
    } else if (port == kDataPort) {
      last_was_command_ = false;
      reset = Data(byte);
    } else {
      return;
    }
    UpdateInterrupts();
    if (reset) ++resets_;
  }
  if (reset && reset_) reset_();
}

bool I8042::Command(uint8_t command) {
  // A new command abandons a pending parameter, as on the real part.
  pending_ = Pending::kNone;
  if (command >= 0x20 && command <= 0x3F) {
    Push(ram_[command - 0x20], /*aux=*/false);
    return false;
  }
  if (command >= 0x60 && command <= 0x7F) {
    pending_ = Pending::kWriteRam;
    pending_ram_index_ = command - 0x60;
    return false;
  }
  if (command >= 0xF0) {
    // Pulse output lines whose bit is 0 in the low nibble; line 0 is reset.
    return (command & kOutResetLine) == 0;
  }
  switch (command) {
    case 0xA7:
      ram_[0] |= kCtrAuxDisable;
      break;
    case 0xA8:
      ram_[0] &= ~kCtrAuxDisable;
      break;
    case 0xA9:  // AUX interface test: 0 = no error.
    case 0xAB:  // Keyboard interface test.
      Push(0x00, false);
      break;
    case 0xAA:  // Controller self-test.
      Push(0x55, false);
      break;
    case 0xAD:
      ram_[0] |= kCtrKbdDisable;
      break;
    case 0xAE:
      ram_[0] &= ~kCtrKbdDisable;
      break;
    case 0xC0:  // Input port: keyboard not inhibited, colour display.
      Push(0x80, false);
      break;
    case 0xD0: {
      uint8_t out = output_port_;
      if (!output_.empty()) out |= output_.front().aux ? 0x20 : 0x10;
      Push(out, false);
      break;
    }
    case 0xD1:
      pending_ = Pending::kWriteOutputPort;
      break;
    case 0xD2:
      pending_ = Pending::kWriteKbdBuffer;
      break;
    case 0xD3:
      pending_ = Pending::kWriteAuxBuffer;
      break;
    case 0xD4:
      pending_ = Pending::kWriteAuxDevice;
      break;
    case 0xDD:  // A20 off / on: A20 stays enabled in this VM.
    case 0xDF:
      break;
    case 0xE0:  // Test inputs: clock and data lines low.
      Push(0x00, false);
      break;
    default:
      break;
  }
  return false;
}

bool I8042::Data(uint8_t value) {
  const Pending pending = pending_;
  pending_ = Pending::kNone;
  switch (pending) {
    case Pending::kWriteRam:
      ram_[pending_ram_index_] = value;
      return false;
    case Pending::kWriteOutputPort:
      // A20 is ignored (always on); bit 0 low asserts CPU reset.
      output_port_ = static_cast<uint8_t>(value | kOutA20);
      if (!(value & kOutResetLine)) {
        output_port_ |= kOutResetLine;  // The reset re-initialises the port.
        return true;
      }
      return false;
    case Pending::kWriteKbdBuffer:
      Push(value, /*aux=*/false);
      return false;
    case Pending::kWriteAuxBuffer:
      Push(value, /*aux=*/true);
      return false;
    case Pending::kWriteAuxDevice:
      // Nothing is plugged into the AUX port: the transmission times out.
      Push(kKbdResend, /*aux=*/true, /*timeout=*/true);
      return false;
    case Pending::kNone:
      break;
  }
  // Writing to the keyboard enables its interface, as on real controllers.
  ram_[0] &= ~kCtrKbdDisable;
  Keyboard(value);
  return false;
}

void I8042::Keyboard(uint8_t value) {
  const KbdPending pending = kbd_pending_;
  kbd_pending_ = KbdPending::kNone;
  switch (pending) {
    case KbdPending::kLeds:
    case KbdPending::kTypematic:
      Push(kKbdAck, false);
      return;
    case KbdPending::kScanSet:
      Push(kKbdAck, false);
      if (value == 0) {
        // With translation on, the controller reports set 2 as set 1's
        // translation of 0x02, i.e. 0x41.
        Push(ram_[0] & kCtrTranslate ? (scan_set_ == 2 ? 0x41 : scan_set_)
                                     : scan_set_,
             false);
      } else if (value <= 3) {
        scan_set_ = value;
      }
      return;
    case KbdPending::kNone:
      break;
  }
  switch (value) {
    case 0xED:
      kbd_pending_ = KbdPending::kLeds;
      Push(kKbdAck, false);
      break;
    case 0xEE:
      Push(kKbdEcho, false);
      break;
    case 0xF0:
      kbd_pending_ = KbdPending::kScanSet;
      Push(kKbdAck, false);
      break;
    case 0xF2:  // Identify: an MF2 keyboard.
      Push(kKbdAck, false);
      Push(0xAB, false);
      Push(ram_[0] & kCtrTranslate ? 0x41 : 0x83, false);
      break;
    case 0xF3:
      kbd_pending_ = KbdPending::kTypematic;
      Push(kKbdAck, false);
      break;
    case 0xF4:
      kbd_scanning_ = true;
      Push(kKbdAck, false);
      break;
    case 0xF5:
      kbd_scanning_ = false;
      Push(kKbdAck, false);
      break;
    case 0xF6:
      scan_set_ = 2;
      kbd_scanning_ = true;
      Push(kKbdAck, false);
      break;
    case 0xF7:
    case 0xF8:
    case 0xF9:
    case 0xFA:
      Push(kKbdAck, false);
      break;
    case 0xFF:
      scan_set_ = 2;
      kbd_scanning_ = true;
      Push(kKbdAck, false);
      Push(kKbdSelfTestOk, false);
      break;
    default:
      Push(kKbdResend, false);
      break;
  }
}

void I8042::Push(uint8_t value, bool aux, bool timeout) {
  if (output_.size() >= kMaxOutput) return;
  output_.push_back({value, aux, timeout});
}

void I8042::UpdateInterrupts() {
  const bool full = !output_.empty();
  const bool aux = full && output_.front().aux;
  const bool kbd_level = full && !aux && (ram_[0] & kCtrKbdInt);
  const bool aux_level = aux && (ram_[0] & kCtrAuxInt);
  if (kbd_level != kbd_level_) {
    kbd_level_ = kbd_level;
    if (kbd_line_) kbd_line_(kbd_level);
  }
  if (aux_level != aux_level_) {
    aux_level_ = aux_level;
    if (aux_line_) aux_line_(aux_level);
  }
}

hvstack::saved::I8042State I8042::SaveState() const {
  absl::MutexLock lock(&mu_);
  hvstack::saved::I8042State out;
  out.set_version(1);
  for (const OutByte& b : output_) {
    hvstack::saved::I8042State::OutByte* o = out.add_output();
    o->set_value(b.value);
    o->set_aux(b.aux);
    o->set_timeout(b.timeout);
  }
  out.set_last_read(last_read_);
  out.set_ram(std::string(reinterpret_cast<const char*>(ram_), sizeof(ram_)));
  out.set_output_port(output_port_);
  out.set_last_was_command(last_was_command_);
  out.set_pending(static_cast<uint32_t>(pending_));
  out.set_pending_ram_index(pending_ram_index_);
  out.set_kbd_pending(static_cast<uint32_t>(kbd_pending_));
  out.set_scan_set(scan_set_);
  out.set_kbd_scanning(kbd_scanning_);
  out.set_kbd_level(kbd_level_);
  out.set_aux_level(aux_level_);
  return out;
}

absl::Status I8042::RestoreState(const hvstack::saved::I8042State& state) {
  auto bad = [](absl::string_view field, uint64_t value) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "saved i8042 state: %s %d is out of range", field, value));
  };
  if (state.version() != 1) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "saved i8042 state format version %d; this worker reads 1",
        state.version()));
  }
  if (state.output_size() > static_cast<int>(kMaxOutput))
    return bad("output buffer length", state.output_size());
  for (const auto& b : state.output()) {
    if (b.value() > 0xFF) return bad("output byte", b.value());
  }
  if (state.ram().size() != sizeof(ram_))
    return bad("RAM size", state.ram().size());
  if (state.last_read() > 0xFF) return bad("last read byte", state.last_read());
  if (state.output_port() > 0xFF)
    return bad("output port", state.output_port());
  if (state.pending() > static_cast<uint32_t>(Pending::kWriteAuxDevice))
    return bad("pending command", state.pending());
  if (state.pending_ram_index() >= sizeof(ram_))
    return bad("pending RAM index", state.pending_ram_index());
  if (state.kbd_pending() > static_cast<uint32_t>(KbdPending::kTypematic))
    return bad("keyboard parameter", state.kbd_pending());
  if (state.scan_set() > 0xFF) return bad("scan code set", state.scan_set());
  absl::MutexLock lock(&mu_);
  output_.clear();
  for (const auto& b : state.output()) {
    output_.push_back(
        OutByte{static_cast<uint8_t>(b.value()), b.aux(), b.timeout()});
  }
  last_read_ = static_cast<uint8_t>(state.last_read());
  std::memcpy(ram_, state.ram().data(), sizeof(ram_));
  output_port_ = static_cast<uint8_t>(state.output_port());
  last_was_command_ = state.last_was_command();
  pending_ = static_cast<Pending>(state.pending());
  pending_ram_index_ = static_cast<uint8_t>(state.pending_ram_index());
  kbd_pending_ = static_cast<KbdPending>(state.kbd_pending());
  scan_set_ = static_cast<uint8_t>(state.scan_set());
  kbd_scanning_ = state.kbd_scanning();
  kbd_level_ = state.kbd_level();
  aux_level_ = state.aux_level();
  return absl::OkStatus();
}

}  // namespace vmwp
