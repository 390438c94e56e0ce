#ifndef HVSTACK_GUEST_UNIXHV_CPU_H_
#define HVSTACK_GUEST_UNIXHV_CPU_H_

// CPU helpers: CPUID, control registers, TSC, a spinlock, the local APIC and
// the IOAPIC (xAPIC MMIO at their PC addresses), and an IDT with C++
// interrupt handlers (GCC's interrupt attribute; needs -mgeneral-regs-only).

#include <stdint.h>

#include "guest/unixhv/io.h"

namespace unixhv {

struct CpuidResult {
  uint32_t eax, ebx, ecx, edx;
};
inline CpuidResult Cpuid(uint32_t leaf, uint32_t subleaf = 0) {
  CpuidResult r;
  asm volatile("cpuid"
               : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx)
               : "a"(leaf), "c"(subleaf));
  return r;
}

inline uint64_t ReadCr3() {
  uint64_t v;
  asm volatile("mov %%cr3, %0" : "=r"(v));
  return v;
}

inline uint64_t Rdtsc() {
  uint32_t lo, hi;
  asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return (uint64_t{hi} << 32) | lo;
}

inline void Cli() { asm volatile("cli" ::: "memory"); }
// sti; hlt back to back: the interrupt shadow after sti means an interrupt
// pending now still wakes the hlt instead of being taken before it.
inline void StiHlt() { asm volatile("sti; hlt" ::: "memory"); }

// TSC frequency in kHz from the hypervisor's timing leaf (0x40000010 or
// 0x40000110 -- wherever "KVMKVMKVM" is), or 0 if none says.
uint32_t TscKhzFromHypervisor();

class SpinLock {
 public:
  void Lock() {
    while (__atomic_exchange_n(&locked_, 1, __ATOMIC_ACQUIRE) != 0) {
      while (__atomic_load_n(&locked_, __ATOMIC_RELAXED) != 0) Pause();
    }
  }
  void Unlock() { __atomic_store_n(&locked_, 0, __ATOMIC_RELEASE); }

 private:
  uint32_t locked_ = 0;
};

// ---- Local APIC (xAPIC mode, default base).
inline constexpr uint64_t kLapicBase = 0xFEE00000;
inline constexpr uint32_t kLapicId = 0x20;
inline constexpr uint32_t kLapicEoi = 0xB0;
inline constexpr uint32_t kLapicSvr = 0xF0;
inline constexpr uint32_t kLapicIcrLow = 0x300;
inline constexpr uint32_t kLapicIcrHigh = 0x310;

inline uint32_t LapicRead(uint32_t reg) { return MmioRead32(kLapicBase + reg); }
inline void LapicWrite(uint32_t reg, uint32_t v) {
  MmioWrite32(kLapicBase + reg, v);
}
inline uint32_t LapicId() { return LapicRead(kLapicId) >> 24; }
// Software-enables the LAPIC with spurious vector 0xFF.
inline void LapicEnable() { LapicWrite(kLapicSvr, 0x1FF); }
inline void LapicEoi() { LapicWrite(kLapicEoi, 0); }
// Sends an IPI: `icr_low` (vector, delivery mode, shorthand...) to `dest`.
void LapicSendIpi(uint32_t dest, uint32_t icr_low);

// ---- IOAPIC.
inline constexpr uint64_t kIoApicBase = 0xFEC00000;
// Routes pin `pin` to `vector` on APIC id `dest`: fixed delivery, physical
// destination, edge-triggered, active high, unmasked.
void IoApicRoute(uint32_t pin, uint8_t vector, uint8_t dest);
void IoApicMask(uint32_t pin);

// Masks every 8259 PIC input, so only the IOAPIC delivers ISA interrupts.
void MaskPic();

// ---- IDT.
struct InterruptFrame {
  uint64_t rip, cs, rflags, rsp, ss;
};
using InterruptHandler = void (*)(InterruptFrame*);
// Installs `handler` (a function with __attribute__((interrupt))) for
// `vector` as an interrupt gate with code selector `cs`, and loads the IDT.
void SetInterruptHandler(uint8_t vector, InterruptHandler handler,
                         uint16_t cs = 0x10);

}  // namespace unixhv

#endif  // HVSTACK_GUEST_UNIXHV_CPU_H_
