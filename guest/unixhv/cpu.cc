#include "guest/unixhv/cpu.h"

namespace unixhv {
namespace {

struct IdtEntry {
  uint16_t offset_low;
  uint16_t selector;
  uint8_t ist;
  uint8_t type_attr;
  uint16_t offset_mid;
  uint32_t offset_high;
  uint32_t reserved;
} __attribute__((packed));
static_assert(sizeof(IdtEntry) == 16);

struct IdtPointer {
  uint16_t limit;
  uint64_t base;
} __attribute__((packed));

IdtEntry idt[256] __attribute__((aligned(16)));

}  // namespace

uint32_t TscKhzFromHypervisor() {
  if ((Cpuid(1).ecx & (1u << 31)) == 0) return 0;
  for (uint32_t base = 0x40000000; base < 0x40010000; base += 0x100) {
    CpuidResult r = Cpuid(base);
    // "KVMKVMKVM\0\0\0"
    if (r.ebx == 0x4b4d564b && r.ecx == 0x564b4d56 && r.edx == 0x4d) {
      if (r.eax < base + 0x10) return 0;
      return Cpuid(base + 0x10).eax;
    }
  }
  return 0;
}

void LapicSendIpi(uint32_t dest, uint32_t icr_low) {
  LapicWrite(kLapicIcrHigh, dest << 24);
  LapicWrite(kLapicIcrLow, icr_low);
  // Wait for "delivery status: idle".
  while (LapicRead(kLapicIcrLow) & (1u << 12)) Pause();
}

namespace {
void IoApicWrite(uint32_t reg, uint32_t value) {
  MmioWrite32(kIoApicBase + 0x00, reg);    // IOREGSEL
  MmioWrite32(kIoApicBase + 0x10, value);  // IOWIN
}
}  // namespace

void IoApicRoute(uint32_t pin, uint8_t vector, uint8_t dest) {
  IoApicWrite(0x11 + 2 * pin, uint32_t{dest} << 24);
  IoApicWrite(0x10 + 2 * pin, vector);  // fixed, physical, edge, high, unmasked
}

void IoApicMask(uint32_t pin) { IoApicWrite(0x10 + 2 * pin, 1u << 16); }

void MaskPic() {
  Outb(0x21, 0xFF);
  Outb(0xA1, 0xFF);
}

void SetInterruptHandler(uint8_t vector, InterruptHandler handler,
                         uint16_t cs) {
  uint64_t addr = reinterpret_cast<uint64_t>(handler);
  IdtEntry& e = idt[vector];
  e.offset_low = addr & 0xFFFF;
  e.selector = cs;
  e.ist = 0;
  e.type_attr = 0x8E;  // present, DPL 0, 64-bit interrupt gate
  e.offset_mid = (addr >> 16) & 0xFFFF;
  e.offset_high = addr >> 32;
  e.reserved = 0;
  IdtPointer ptr{sizeof(idt) - 1, reinterpret_cast<uint64_t>(idt)};
  asm volatile("lidt %0" : : "m"(ptr));
}

}  // namespace unixhv
