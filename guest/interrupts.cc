// Interrupt delivery checks, driven by the host test (vid/partition_test.cc):
//  1. int3: an IDT #BP handler runs and execution resumes after the int3
//     (kvm_pvm's emulator rejects int3; vid completes it).
//  2. IOAPIC: pin 4 is routed to vector 0x24 on APIC 0; after printing
//     "irq: ready" the guest waits in hlt until the host raises GSI 4.
//  3. MSI: after "msi: ready" it waits for vector 0x31, which the host sends
//     with vid::Partition::SignalMsi.
//  4. Timers: the LAPIC timer (one-shot, vector 0x40) and the PIT (channel 0,
//     100 Hz) through IOAPIC pin 2 (vector 0x20) -- where the MADT's ISA
//     IRQ 0 -> GSI 2 override says it is.
// Then it powers off.
#include "guest/unixhv/cpu.h"
#include "guest/unixhv/unixhv.h"

namespace {

constexpr uint8_t kIrqVector = 0x24;
constexpr uint8_t kMsiVector = 0x31;
constexpr uint8_t kPitVector = 0x20;
constexpr uint8_t kLapicTimerVector = 0x40;

volatile uint64_t bp_rip = 0;
volatile uint32_t bp_count = 0;
volatile uint32_t irq_count = 0;
volatile uint32_t msi_count = 0;
volatile uint32_t pit_count = 0;
volatile uint32_t lapic_timer_count = 0;

__attribute__((interrupt)) void BreakpointHandler(
    unixhv::InterruptFrame* frame) {
  bp_rip = frame->rip;
  bp_count = bp_count + 1;
}

__attribute__((interrupt)) void IrqHandler(unixhv::InterruptFrame*) {
  irq_count = irq_count + 1;
  unixhv::LapicEoi();
}

__attribute__((interrupt)) void MsiHandler(unixhv::InterruptFrame*) {
  msi_count = msi_count + 1;
  unixhv::LapicEoi();
}

__attribute__((interrupt)) void PitHandler(unixhv::InterruptFrame*) {
  pit_count = pit_count + 1;
  unixhv::LapicEoi();
}

__attribute__((interrupt)) void LapicTimerHandler(unixhv::InterruptFrame*) {
  lapic_timer_count = lapic_timer_count + 1;
  unixhv::LapicEoi();
}

void WaitFor(volatile uint32_t* counter) {
  for (;;) {
    unixhv::Cli();
    if (*counter != 0) return;
    unixhv::StiHlt();  // an interrupt wakes us; check again with IF=0
  }
}

}  // namespace

extern "C" void unixhv_main(uint64_t) {
  unixhv::Serial com1;
  com1.Init();
  com1.Write("interrupts guest\r\n");
  unixhv::SetInterruptHandler(3, BreakpointHandler);
  unixhv::SetInterruptHandler(kIrqVector, IrqHandler);
  unixhv::SetInterruptHandler(kMsiVector, MsiHandler);
  unixhv::SetInterruptHandler(kPitVector, PitHandler);
  unixhv::SetInterruptHandler(kLapicTimerVector, LapicTimerHandler);

  uint64_t after = 0;
  asm volatile(
      "lea 1f(%%rip), %0\n\t"
      "int3\n"
      "1:"
      : "=r"(after));
  com1.Write("int3: handler ran ");
  com1.WriteDec(bp_count);
  com1.Write(" time(s), saved rip ");
  com1.Write(bp_rip == after ? "is the next instruction" : "is WRONG");
  com1.Write("\r\nint3: resumed\r\n");

  unixhv::MaskPic();
  unixhv::LapicEnable();
  unixhv::IoApicRoute(4, kIrqVector, static_cast<uint8_t>(unixhv::LapicId()));
  com1.Write("irq: ready\r\n");
  WaitFor(&irq_count);
  com1.Write("irq: vector 0x24 received\r\n");

  com1.Write("msi: ready\r\n");
  WaitFor(&msi_count);
  com1.Write("msi: vector 0x31 received\r\n");

  // LAPIC timer: one-shot, divide by 1, 1,000,000 ticks (1 ms at KVM's 1 GHz).
  unixhv::LapicWrite(0x3E0, 0xB);
  unixhv::LapicWrite(0x320, kLapicTimerVector);
  unixhv::LapicWrite(0x380, 1000000);
  WaitFor(&lapic_timer_count);
  com1.Write("timer: lapic timer interrupt received\r\n");

  // PIT channel 0, mode 2, 11932 = 100 Hz, on IOAPIC pin 2.
  unixhv::IoApicRoute(2, kPitVector, static_cast<uint8_t>(unixhv::LapicId()));
  unixhv::Outb(0x43, 0x34);
  unixhv::Outb(0x40, 11932 & 0xFF);
  unixhv::Outb(0x40, 11932 >> 8);
  WaitFor(&pit_count);
  unixhv::IoApicMask(2);
  com1.Write("timer: pit interrupt received on ioapic pin 2\r\n");
}
