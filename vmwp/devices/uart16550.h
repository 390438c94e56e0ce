#ifndef HVSTACK_VMWP_DEVICES_UART16550_H_
#define HVSTACK_VMWP_DEVICES_UART16550_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "vid/io_handler.h"
#include "vmwp/devices/saved_state.pb.h"

namespace vmwp {

// An emulated NS16550A UART (the PC's COM ports), register-compatible enough
// for Linux's 8250 driver and for polled firmware-style output. Transmission is
// instantaneous: a byte written to THR is handed to the output sink at once, so
// LSR always reports THRE|TEMT.
//
// Interrupts: the INTR output is computed after every register access and
// input push, and the callback set with SetInterruptLine is called only when
// its level changes. As on a PC, INTR reaches the interrupt controller only
// while MCR OUT2 is set and not in loopback. Sources, highest priority first:
// receiver line status (overrun, with ELSI), received data (with ERBFI, while
// the receive queue is non-empty), THR empty (with ETBEI; latched when THR
// empties or ETBEI is turned on, cleared by writing THR or by reading IIR while
// it is the reported source) and modem status (with EDSSI). COM1's IRQ 4 is an
// ISA interrupt, edge-triggered on the PIC and IOAPIC: a new source raised
// while the line is already high produces no new edge, which is fine because
// Linux's 8250 handler (like a PC BIOS's) loops on IIR until "no interrupt",
// which lowers the line; every later source then produces a fresh rising
// edge. This is also how QEMU's serial model drives its IRQ.
//
// Thread-safety: PortRead/PortWrite may be called from several VP threads;
// PushInput from any thread. The sink and the interrupt callback run with the
// UART's lock held (so level changes reach the controller in order), so they
// must not call back into the UART.
class Uart16550 : public vid::PortIoHandler {
 public:
  static constexpr uint16_t kCom1Base = 0x3F8;
  static constexpr uint16_t kPortCount = 8;
  // Host-side receive queue bound: input beyond it is refused (PushInput
  // returns fewer bytes, counts them in input_dropped() and sets LSR OE, as a
  // real receiver overrun would).
  static constexpr size_t kInputQueueCapacity = 4096;

  using OutputSink = std::function<void(std::string_view bytes)>;
  // Called with the new level whenever the interrupt line (IRQ 4 for COM1)
  // changes.
  using InterruptLine = std::function<void(bool asserted)>;

  explicit Uart16550(OutputSink sink, uint16_t base = kCom1Base);

  // Optional; unused until the VM has an interrupt controller wired to it.
  void SetInterruptLine(InterruptLine line);

  // Queues bytes for the guest to read from RBR and raises the data-ready
  // interrupt if enabled. Returns how many were accepted; the rest are dropped
  // and counted.
  size_t PushInput(std::string_view bytes);
  // Bytes PushInput refused because the receive queue was full.
  uint64_t input_dropped() const;
  // Bytes waiting in the receive queue.
  size_t input_queued() const;

  // Save and restore (issue 14): registers, receive FIFO and interrupt
  // state. Restore does not drive the interrupt line (the saved irqchip has
  // its level); InvalidArgument names a bad field.
  hvstack::saved::Uart16550State SaveState() const;
  absl::Status RestoreState(const hvstack::saved::Uart16550State& state);

  uint16_t base() const { return base_; }

  // vid::PortIoHandler. Accesses wider than one byte are treated as one byte at
  // `port` (the 16550 has only byte-wide registers); accesses outside [base,
  // base+8) read 0xFF.
  uint32_t PortRead(uint16_t port, uint8_t size) override;
  void PortWrite(uint16_t port, uint8_t size, uint32_t value) override;

  // Register offsets and bits, public for tests and for devices that embed a
  // UART.
  enum Register : uint8_t {
    kRbrThrDll = 0,
    kIerDlm = 1,
    kIirFcr = 2,
    kLcr = 3,
    kMcr = 4,
    kLsr = 5,
    kMsr = 6,
    kScr = 7,
  };
  static constexpr uint8_t kIerRxData = 0x01;
  static constexpr uint8_t kIerThre = 0x02;
  static constexpr uint8_t kIerLineStatus = 0x04;
  static constexpr uint8_t kIerModemStatus = 0x08;
  static constexpr uint8_t kIirNoInterrupt = 0x01;
  static constexpr uint8_t kIirModemStatus = 0x00;
  static constexpr uint8_t kIirThre = 0x02;
  static constexpr uint8_t kIirRxData = 0x04;
  static constexpr uint8_t kIirLineStatus = 0x06;
  static constexpr uint8_t kIirFifoEnabled = 0xC0;
  static constexpr uint8_t kFcrEnable = 0x01;
  static constexpr uint8_t kFcrClearRx = 0x02;
  static constexpr uint8_t kFcrClearTx = 0x04;
  static constexpr uint8_t kLcrDlab = 0x80;
  static constexpr uint8_t kMcrDtr = 0x01;
  static constexpr uint8_t kMcrRts = 0x02;
  static constexpr uint8_t kMcrOut1 = 0x04;
  static constexpr uint8_t kMcrOut2 = 0x08;
  static constexpr uint8_t kMcrLoop = 0x10;
  static constexpr uint8_t kLsrDataReady = 0x01;
  static constexpr uint8_t kLsrOverrun = 0x02;
  static constexpr uint8_t kLsrThre = 0x20;
  static constexpr uint8_t kLsrTemt = 0x40;
  static constexpr uint8_t kMsrDcts = 0x01;
  static constexpr uint8_t kMsrDdsr = 0x02;
  static constexpr uint8_t kMsrTeri = 0x04;
  static constexpr uint8_t kMsrDdcd = 0x08;
  static constexpr uint8_t kMsrCts = 0x10;
  static constexpr uint8_t kMsrDsr = 0x20;
  static constexpr uint8_t kMsrRi = 0x40;
  static constexpr uint8_t kMsrDcd = 0x80;

 private:
  uint8_t ReadRegister(uint8_t offset) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteRegister(uint8_t offset, uint8_t value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Transmit(uint8_t byte) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetMcr(uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint8_t ComputeIir() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateInterrupt() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint16_t base_;
  const OutputSink sink_;

  mutable absl::Mutex mu_;
  InterruptLine interrupt_line_ ABSL_GUARDED_BY(mu_);
  std::deque<uint8_t> rx_ ABSL_GUARDED_BY(mu_);
  uint8_t ier_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t fcr_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t lcr_ ABSL_GUARDED_BY(mu_) = 0x03;  // 8N1, as after a BIOS.
  uint8_t mcr_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t msr_ ABSL_GUARDED_BY(mu_) = kMsrCts | kMsrDsr | kMsrDcd;
  uint8_t scr_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t dll_ ABSL_GUARDED_BY(mu_) = 0x0C;  // 9600 baud.
  uint8_t dlm_ ABSL_GUARDED_BY(mu_) = 0;
  bool overrun_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t input_dropped_ ABSL_GUARDED_BY(mu_) = 0;
  // A THR-empty interrupt is latched when THR empties and cleared by reading
  // IIR (while it is the reported source) or by writing THR, as on the real
  // part.
  bool thre_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool irq_level_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace vmwp

#endif  // HVSTACK_VMWP_DEVICES_UART16550_H_
