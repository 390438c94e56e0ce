// Counts on every CPU, in a register and in memory, and prints both after each
// step, so that a save/restore test can see that the guest goes on from
// exactly the next value (issue 14):
//
//   counter: <n> CPUs counting
//   counter: cpu <apic id> reg <r> mem <m>
//
// Each CPU keeps its count in R15 (a callee-saved register the loop, written
// in assembly, never spills) and in a 64-bit word in memory, both starting at
// 0 and incremented together, then printed under a spinlock; r == m on every
// line, and per CPU the values are 1, 2, 3, ... with no repeat and no gap.
// Command line: "cpus=<n>" (default: CPUID leaf 1's count), "delay=<us>"
// (TSC-timed wait after each line, default 0), "steps=<k>" (power off after
// CPU 0's k-th step, default never).
#include "guest/unixhv/boot_params.h"
#include "guest/unixhv/cpu.h"
#include "guest/unixhv/unixhv.h"

extern "C" {
extern const char ap_trampoline_start[];
extern const char ap_trampoline_end[];
extern const char ap_trampoline_cr3[];
void ap_main();
// counter_loop(uint64_t* memory_count, uint32_t cpu): never returns.
void counter_loop(uint64_t* memory_count, uint32_t cpu);
void counter_report(uint32_t cpu, uint64_t reg, uint64_t mem);
}

// The counting loop: R15 is the register count, (RBX) the memory count, R12
// the CPU. All three are callee-saved, so counter_report cannot change them.
asm(R"(
    .text
    .globl counter_loop
counter_loop:
    subq $8, %rsp
    movq %rdi, %rbx
    movl %esi, %r12d
    xorl %r15d, %r15d
1:  incq %r15
    incq (%rbx)
    movl %r12d, %edi
    movq %r15, %rsi
    movq (%rbx), %rdx
    call counter_report
    jmp 1b
)");

namespace {

constexpr uint64_t kTrampoline = 0x10000;  // SIPI vector 0x10
constexpr uint32_t kSipiVector = kTrampoline >> 12;
constexpr uint32_t kIcrInitAllButSelf = 0x000C4500;
constexpr uint32_t kIcrSipiAllButSelf = 0x000C4600 | kSipiVector;
constexpr uint32_t kMaxCpus = 16;

unixhv::SpinLock console_lock;
uint32_t aps_online = 0;
uint32_t go = 0;
uint64_t ticks_per_us = 0;
uint64_t delay_us = 0;
uint64_t steps = 0;
uint64_t memory_counts[kMaxCpus];

uint64_t Option(const unixhv::CommandLine& cmdline, const char* name) {
  if (cmdline.error != nullptr) return 0;
  const char* s = cmdline.text;
  const size_t n = cmdline.length;
  size_t len = 0;
  while (name[len] != '\0') ++len;
  for (size_t i = 0; i + len + 1 <= n; ++i) {
    if (i != 0 && s[i - 1] != ' ') continue;
    bool match = s[i + len] == '=';
    for (size_t k = 0; match && k < len; ++k) match = s[i + k] == name[k];
    if (!match) continue;
    uint64_t v = 0;
    for (size_t j = i + len + 1; j < n && s[j] >= '0' && s[j] <= '9'; ++j)
      v = v * 10 + static_cast<uint64_t>(s[j] - '0');
    return v;
  }
  return 0;
}

void Delay(uint64_t ticks) {
  const uint64_t start = unixhv::Rdtsc();
  while (unixhv::Rdtsc() - start < ticks) unixhv::Pause();
}

void Count(uint32_t cpu) {
  while (__atomic_load_n(&go, __ATOMIC_ACQUIRE) == 0) unixhv::Pause();
  counter_loop(&memory_counts[cpu % kMaxCpus], cpu);
}

}  // namespace

extern "C" void counter_report(uint32_t cpu, uint64_t reg, uint64_t mem) {
  unixhv::Serial com1;
  console_lock.Lock();
  com1.Write("counter: cpu ");
  com1.WriteDec(cpu);
  com1.Write(" reg ");
  com1.WriteDec(reg);
  com1.Write(" mem ");
  com1.WriteDec(mem);
  com1.Write("\r\n");
  console_lock.Unlock();
  if (cpu == 0 && steps != 0 && reg >= steps) {
    com1.Write("counter: done\r\n");
    unixhv_power_off();
  }
  if (delay_us != 0) Delay(delay_us * ticks_per_us);
}

extern "C" void ap_main() {
  __atomic_fetch_add(&aps_online, 1, __ATOMIC_RELEASE);
  Count(unixhv::LapicId());
}

extern "C" void unixhv_main(uint64_t boot_params) {
  unixhv::Serial com1;
  com1.Init();
  const unixhv::CommandLine cmdline = unixhv::GetCommandLine(boot_params);
  uint32_t expected = (unixhv::Cpuid(1).ebx >> 16) & 0xFF;
  if (uint64_t n = Option(cmdline, "cpus"); n != 0) {
    expected = static_cast<uint32_t>(n);
  }
  if (expected == 0) expected = 1;
  if (expected > kMaxCpus) expected = kMaxCpus;
  delay_us = Option(cmdline, "delay");
  steps = Option(cmdline, "steps");
  const uint32_t khz = unixhv::TscKhzFromHypervisor();
  ticks_per_us = khz != 0 ? khz / 1000 : 3000;

  if (expected > 1) {
    const size_t size = ap_trampoline_end - ap_trampoline_start;
    char* dst = reinterpret_cast<char*>(kTrampoline);
    for (size_t i = 0; i < size; ++i) dst[i] = ap_trampoline_start[i];
    *reinterpret_cast<volatile uint32_t*>(
        dst + (ap_trampoline_cr3 - ap_trampoline_start)) =
        static_cast<uint32_t>(unixhv::ReadCr3());
    unixhv::LapicEnable();
    unixhv::LapicSendIpi(0, kIcrInitAllButSelf);
    Delay(1000 * ticks_per_us);
    unixhv::LapicSendIpi(0, kIcrSipiAllButSelf);
    Delay(200 * ticks_per_us);
    unixhv::LapicSendIpi(0, kIcrSipiAllButSelf);
    const uint64_t deadline = unixhv::Rdtsc() + 30'000'000 * ticks_per_us;
    while (__atomic_load_n(&aps_online, __ATOMIC_ACQUIRE) < expected - 1 &&
           unixhv::Rdtsc() < deadline) {
      unixhv::Pause();
    }
  }
  const uint32_t online = __atomic_load_n(&aps_online, __ATOMIC_ACQUIRE) + 1;
  com1.Write("counter: ");
  com1.WriteDec(online);
  com1.Write(" CPUs counting\r\n");
  __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
  Count(unixhv::LapicId());
}
