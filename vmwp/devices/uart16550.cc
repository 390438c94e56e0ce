#include "vmwp/devices/uart16550.h"

#include <utility>

#include "absl/strings/str_format.h"

namespace vmwp {

Uart16550::Uart16550(OutputSink sink, uint16_t base)
    : base_(base), sink_(std::move(sink)) {}

void Uart16550::SetInterruptLine(InterruptLine line) {
  absl::MutexLock lock(&mu_);
  interrupt_line_ = std::move(line);
  irq_level_ = false;
  UpdateInterrupt();
}

size_t Uart16550::PushInput(std::string_view bytes) {
  absl::MutexLock lock(&mu_);
  size_t accepted = 0;
  for (char c : bytes) {
    if (rx_.size() >= kInputQueueCapacity) {
      overrun_ = true;
      input_dropped_ += bytes.size() - accepted;
      break;
    }
    rx_.push_back(static_cast<uint8_t>(c));
    ++accepted;
  }
  UpdateInterrupt();
  return accepted;
}

uint64_t Uart16550::input_dropped() const {
  absl::MutexLock lock(&mu_);
  return input_dropped_;
}

size_t Uart16550::input_queued() const {
  absl::MutexLock lock(&mu_);
  return rx_.size();
}

uint32_t Uart16550::PortRead(uint16_t port, uint8_t size) {
  if (port < base_ || port >= base_ + kPortCount) {
    // Open bus, as an absent device reads.
    return size >= 4 ? 0xFFFFFFFFu : (1u << (8 * (size == 2 ? 2 : 1))) - 1;
  }
  absl::MutexLock lock(&mu_);
  return ReadRegister(static_cast<uint8_t>(port - base_));
}

void Uart16550::PortWrite(uint16_t port, uint8_t size, uint32_t value) {
  if (port < base_ || port >= base_ + kPortCount) return;
  absl::MutexLock lock(&mu_);
  WriteRegister(static_cast<uint8_t>(port - base_),
                static_cast<uint8_t>(value));
}

uint8_t Uart16550::ReadRegister(uint8_t offset) {
  const bool dlab = (lcr_ & kLcrDlab) != 0;
  uint8_t result = 0;
  switch (offset) {
    case kRbrThrDll:
      if (dlab) return dll_;
      if (!rx_.empty()) {
        result = rx_.front();
        rx_.pop_front();
      }
      UpdateInterrupt();
      return result;
    case kIerDlm:
      return dlab ? dlm_ : ier_;
    case kIirFcr: {
      result = ComputeIir();
      // Reading IIR acknowledges a THR-empty interrupt, but only when it is the
      // one reported.
      if ((result & 0x0F) == kIirThre) thre_pending_ = false;
      if (fcr_ & kFcrEnable) result |= kIirFifoEnabled;
      UpdateInterrupt();
      return result;
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr:
      result = kLsrThre | kLsrTemt;
      if (!rx_.empty()) result |= kLsrDataReady;
      if (overrun_) result |= kLsrOverrun;
      overrun_ = false;  // Error bits clear on read.
      UpdateInterrupt();
      return result;
    case kMsr:
      result = msr_;
      msr_ &= 0xF0;  // Delta bits clear on read.
      UpdateInterrupt();
      return result;
    case kScr:
      return scr_;
  }
  return 0xFF;
}

void Uart16550::WriteRegister(uint8_t offset, uint8_t value) {
  const bool dlab = (lcr_ & kLcrDlab) != 0;
  switch (offset) {
    case kRbrThrDll:
      if (dlab) {
        dll_ = value;
      } else {
        Transmit(value);
      }
      break;
    case kIerDlm:
      if (dlab) {
        dlm_ = value;
      } else {
        const uint8_t old = ier_;
        ier_ = value & 0x0F;
        // Enabling ETBEI while THR is empty (always, here) raises a THRE
        // interrupt at once.
        if (!(old & kIerThre) && (ier_ & kIerThre)) thre_pending_ = true;
      }
      break;
    case kIirFcr:
      // Toggling the FIFO enable bit resets both FIFOs on the real part.
      if ((value ^ fcr_) & kFcrEnable) rx_.clear();
      if (value & kFcrClearRx) rx_.clear();
      // Only the enable bit, DMA mode and trigger level are state; the clear
      // bits self-reset.
      fcr_ = value & 0xC9;
      break;
    case kLcr:
      lcr_ = value;
      break;
    case kMcr:
      SetMcr(value & 0x1F);
      break;
    case kLsr:
      // Factory test register on some parts; writes are ignored.
      break;
    case kMsr:
      break;
    case kScr:
      scr_ = value;
      break;
  }
  UpdateInterrupt();
}

void Uart16550::Transmit(uint8_t byte) {
  // Writing THR acknowledges a pending THRE interrupt; the byte leaves at once,
  // so THR is empty again immediately and, if enabled, a new THRE interrupt is
  // latched.
  if (mcr_ & kMcrLoop) {
    if (rx_.size() < kInputQueueCapacity) {
      rx_.push_back(byte);
    } else {
      overrun_ = true;
    }
  } else if (sink_) {
    const char c = static_cast<char>(byte);
    sink_(std::string_view(&c, 1));
  }
  thre_pending_ = (ier_ & kIerThre) != 0;
}

void Uart16550::SetMcr(uint8_t value) {
  mcr_ = value;
  uint8_t status;
  if (mcr_ & kMcrLoop) {
    // Loopback wires the modem outputs back to the inputs: RTS->CTS, DTR->DSR,
    // OUT1->RI, OUT2->DCD. Drivers use this to probe for a real UART.
    status = 0;
    if (mcr_ & kMcrRts) status |= kMsrCts;
    if (mcr_ & kMcrDtr) status |= kMsrDsr;
    if (mcr_ & kMcrOut1) status |= kMsrRi;
    if (mcr_ & kMcrOut2) status |= kMsrDcd;
  } else {
    // Not in loopback: present a connected, ready peer.
    status = kMsrCts | kMsrDsr | kMsrDcd;
  }
  const uint8_t old = msr_ & 0xF0;
  uint8_t delta = msr_ & 0x0F;
  if ((old ^ status) & kMsrCts) delta |= kMsrDcts;
  if ((old ^ status) & kMsrDsr) delta |= kMsrDdsr;
  if ((old ^ status) & kMsrDcd) delta |= kMsrDdcd;
  if ((old & kMsrRi) && !(status & kMsrRi))
    delta |= kMsrTeri;  // Trailing edge only.
  msr_ = status | delta;
}

uint8_t Uart16550::ComputeIir() const {
  // Highest priority first, as the 16550 reports them.
  if ((ier_ & kIerLineStatus) && overrun_) return kIirLineStatus;
  if ((ier_ & kIerRxData) && !rx_.empty()) return kIirRxData;
  if ((ier_ & kIerThre) && thre_pending_) return kIirThre;
  if ((ier_ & kIerModemStatus) && (msr_ & 0x0F)) return kIirModemStatus;
  return kIirNoInterrupt;
}

void Uart16550::UpdateInterrupt() {
  // On a PC the UART's INTR pin reaches the interrupt controller only through
  // OUT2, and loopback disconnects it from the pin.
  const bool level = !(ComputeIir() & kIirNoInterrupt) && (mcr_ & kMcrOut2) &&
                     !(mcr_ & kMcrLoop);
  if (level == irq_level_) return;
  irq_level_ = level;
  if (interrupt_line_) interrupt_line_(level);
}

hvstack::saved::Uart16550State Uart16550::SaveState() const {
  absl::MutexLock lock(&mu_);
  hvstack::saved::Uart16550State out;
  out.set_version(1);
  out.set_rx(std::string(rx_.begin(), rx_.end()));
  out.set_ier(ier_);
  out.set_fcr(fcr_);
  out.set_lcr(lcr_);
  out.set_mcr(mcr_);
  out.set_msr(msr_);
  out.set_scr(scr_);
  out.set_dll(dll_);
  out.set_dlm(dlm_);
  out.set_overrun(overrun_);
  out.set_thre_pending(thre_pending_);
  out.set_irq_level(irq_level_);
  out.set_input_dropped(input_dropped_);
  return out;
}

absl::Status Uart16550::RestoreState(
    const hvstack::saved::Uart16550State& state) {
  if (state.version() != 1) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "saved COM1 state format version %d; this worker reads 1",
        state.version()));
  }
  if (state.rx().size() > kInputQueueCapacity) {
    return absl::InvalidArgumentError(
        absl::StrFormat("saved COM1 receive FIFO holds %d bytes (at most %d)",
                        state.rx().size(), kInputQueueCapacity));
  }
  for (uint32_t v : {state.ier(), state.fcr(), state.lcr(), state.mcr(),
                     state.msr(), state.scr(), state.dll(), state.dlm()}) {
    if (v > 0xFF) {
      return absl::InvalidArgumentError(
          absl::StrFormat("saved COM1 register value 0x%x is not a byte", v));
    }
  }
  absl::MutexLock lock(&mu_);
  rx_.assign(state.rx().begin(), state.rx().end());
  ier_ = static_cast<uint8_t>(state.ier());
  fcr_ = static_cast<uint8_t>(state.fcr());
  lcr_ = static_cast<uint8_t>(state.lcr());
  mcr_ = static_cast<uint8_t>(state.mcr());
  msr_ = static_cast<uint8_t>(state.msr());
  scr_ = static_cast<uint8_t>(state.scr());
  dll_ = static_cast<uint8_t>(state.dll());
  dlm_ = static_cast<uint8_t>(state.dlm());
  overrun_ = state.overrun();
  thre_pending_ = state.thre_pending();
  irq_level_ = state.irq_level();
  input_dropped_ = state.input_dropped();
  return absl::OkStatus();
}

}  // namespace vmwp
