// Prints a marker, then halts with interrupts off, forever: a running VM that
// costs no CPU (with KVM's in-kernel irqchip, HLT blocks inside KVM_RUN), for
// benchmarks that run many VMs at once.
#include "guest/unixhv/cpu.h"
#include "guest/unixhv/unixhv.h"

extern "C" void unixhv_main(uint64_t) {
  unixhv::Serial com1;
  com1.Init();
  com1.Write("idle: halted\r\n");
  for (;;) {
    unixhv::Cli();
    asm volatile("hlt" ::: "memory");
  }
}
