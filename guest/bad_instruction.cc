// Ends the VM in a crash on every host. First `lock cmpxchg16b`, which
// kvm_pvm's instruction emulator rejects (KVM_EXIT_INTERNAL_ERROR, emulation
// failure). A host that runs guest code natively executes it fine, so then jump
// into unbacked MMIO space: fetching instructions from there cannot be emulated
// by any KVM, so the VM still ends crashed rather than powered off.
#include "guest/unixhv/unixhv.h"

namespace {

constexpr uint64_t kUnbackedMmio = 0xE0001000;

alignas(16) volatile uint64_t target[2];

}  // namespace

extern "C" void unixhv_main(uint64_t) {
  unixhv::Serial com1;
  com1.Init();
  com1.Write("bad_instruction: executing lock cmpxchg16b\r\n");
  uint64_t rax = 0, rdx = 0;
  asm volatile("lock cmpxchg16b %2"
               : "+a"(rax), "+d"(rdx), "+m"(target[0])
               : "b"(uint64_t{1}), "c"(uint64_t{2})
               : "memory", "cc");
  com1.Write("bad_instruction: cmpxchg16b ran; jumping into unbacked MMIO\r\n");
  reinterpret_cast<void (*)()>(kUnbackedMmio)();
  com1.Write("bad_instruction: still alive after MMIO jump?!\r\n");
  for (;;) asm volatile("cli; hlt");
}
