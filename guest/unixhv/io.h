#ifndef HVSTACK_GUEST_UNIXHV_IO_H_
#define HVSTACK_GUEST_UNIXHV_IO_H_

#include <stdint.h>

// Port and MMIO accessors. Every one of these traps to the VMM; keep them out
// of hot loops.
namespace unixhv {

inline uint8_t Inb(uint16_t port) {
  uint8_t v;
  asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
inline uint16_t Inw(uint16_t port) {
  uint16_t v;
  asm volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
inline uint32_t Inl(uint16_t port) {
  uint32_t v;
  asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
inline void Outb(uint16_t port, uint8_t v) {
  asm volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
inline void Outw(uint16_t port, uint16_t v) {
  asm volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}
inline void Outl(uint16_t port, uint32_t v) {
  asm volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

inline uint32_t MmioRead32(uint64_t addr) {
  return *reinterpret_cast<volatile uint32_t*>(addr);
}
inline uint64_t MmioRead64(uint64_t addr) {
  return *reinterpret_cast<volatile uint64_t*>(addr);
}
inline void MmioWrite32(uint64_t addr, uint32_t v) {
  *reinterpret_cast<volatile uint32_t*>(addr) = v;
}
inline void MmioWrite64(uint64_t addr, uint64_t v) {
  *reinterpret_cast<volatile uint64_t*>(addr) = v;
}

inline void Pause() { asm volatile("pause"); }

}  // namespace unixhv

#endif  // HVSTACK_GUEST_UNIXHV_IO_H_
