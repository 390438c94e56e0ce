// SMP start-up check. The BSP learns how many CPUs to expect from CPUID leaf 1
// EBX[23:16] (the hypervisor's topology; "cpus=<n>" on the command line
// overrides it), copies the real-mode trampoline (smp_trampoline.S) to
// 0x10000 and starts the APs through its LAPIC: INIT, SIPI, SIPI, all
// excluding itself. Each AP reaches long mode on the BSP's page tables,
// prints "AP <apic id> online" under a spinlock and counts itself. The BSP
// waits (bounded by the TSC) and prints "all <n> CPUs online", or a timeout
// line saying how many came, then powers off.
#include "guest/unixhv/cpu.h"
#include "guest/unixhv/unixhv.h"

extern "C" {
extern const char ap_trampoline_start[];
extern const char ap_trampoline_end[];
extern const char ap_trampoline_cr3[];
void ap_main();
}

namespace {

constexpr uint64_t kTrampoline = 0x10000;  // SIPI vector 0x10
constexpr uint32_t kSipiVector = kTrampoline >> 12;
// ICR: all excluding self (shorthand 11), level assert, INIT (101) / SIPI
// (110).
constexpr uint32_t kIcrInitAllButSelf = 0x000C4500;
constexpr uint32_t kIcrSipiAllButSelf = 0x000C4600 | kSipiVector;

unixhv::SpinLock console_lock;
uint32_t aps_online = 0;

uint32_t ParseCpus(const unixhv::CommandLine& cmdline) {
  if (cmdline.error != nullptr) return 0;
  const char* s = cmdline.text;
  size_t n = cmdline.length;
  for (size_t i = 0; i + 5 <= n; ++i) {
    if ((i == 0 || s[i - 1] == ' ') && s[i] == 'c' && s[i + 1] == 'p' &&
        s[i + 2] == 'u' && s[i + 3] == 's' && s[i + 4] == '=') {
      uint32_t v = 0;
      for (size_t j = i + 5; j < n && s[j] >= '0' && s[j] <= '9'; ++j)
        v = v * 10 + (s[j] - '0');
      return v;
    }
  }
  return 0;
}

void Delay(uint64_t tsc_ticks) {
  uint64_t start = unixhv::Rdtsc();
  while (unixhv::Rdtsc() - start < tsc_ticks) unixhv::Pause();
}

}  // namespace

extern "C" void ap_main() {
  uint32_t lapic_id = unixhv::LapicId();
  uint32_t cpuid_id = unixhv::Cpuid(1).ebx >> 24;
  unixhv::Serial com1;
  console_lock.Lock();
  com1.Write("AP ");
  com1.WriteDec(lapic_id);
  com1.Write(" online");
  if (cpuid_id != lapic_id) {
    com1.Write(" (CPUID initial APIC id ");
    com1.WriteDec(cpuid_id);
    com1.Write(" differs)");
  }
  com1.Write("\r\n");
  console_lock.Unlock();
  __atomic_fetch_add(&aps_online, 1, __ATOMIC_RELEASE);
  for (;;) asm volatile("cli; hlt");
}

extern "C" void unixhv_main(uint64_t boot_params) {
  unixhv::Serial com1;
  com1.Init();
  uint32_t expected = (unixhv::Cpuid(1).ebx >> 16) & 0xFF;
  if (uint32_t from_cmdline = ParseCpus(unixhv::GetCommandLine(boot_params));
      from_cmdline != 0) {
    expected = from_cmdline;
  }
  if (expected == 0) expected = 1;
  uint32_t khz = unixhv::TscKhzFromHypervisor();
  const uint64_t ticks_per_ms = khz != 0 ? khz : 3000000 / 1000 * 1000;

  com1.Write("smp: BSP APIC id ");
  com1.WriteDec(unixhv::LapicId());
  com1.Write(", expecting ");
  com1.WriteDec(expected);
  com1.Write(" CPUs, TSC ");
  com1.WriteDec(khz);
  com1.Write(" kHz\r\n");

  // The trampoline, with our CR3 patched into the copy.
  size_t size = ap_trampoline_end - ap_trampoline_start;
  char* dst = reinterpret_cast<char*>(kTrampoline);
  for (size_t i = 0; i < size; ++i) dst[i] = ap_trampoline_start[i];
  uint32_t cr3 = static_cast<uint32_t>(unixhv::ReadCr3());
  *reinterpret_cast<volatile uint32_t*>(
      dst + (ap_trampoline_cr3 - ap_trampoline_start)) = cr3;

  if (expected > 1) {
    unixhv::LapicEnable();
    unixhv::LapicSendIpi(0, kIcrInitAllButSelf);
    Delay(ticks_per_ms);  // 10 ms on hardware; a VMM needs none
    unixhv::LapicSendIpi(0, kIcrSipiAllButSelf);
    Delay(ticks_per_ms / 5);
    unixhv::LapicSendIpi(0, kIcrSipiAllButSelf);
  }

  // Up to 30 s of TSC time: guest code is emulated on some hosts, and VPs may
  // share few host CPUs.
  uint64_t deadline = unixhv::Rdtsc() + 30000 * ticks_per_ms;
  while (__atomic_load_n(&aps_online, __ATOMIC_ACQUIRE) < expected - 1 &&
         unixhv::Rdtsc() < deadline) {
    Delay(ticks_per_ms);
  }
  uint32_t online = __atomic_load_n(&aps_online, __ATOMIC_ACQUIRE) + 1;
  console_lock.Lock();
  if (online == expected) {
    com1.Write("all ");
    com1.WriteDec(online);
    com1.Write(" CPUs online\r\n");
  } else {
    com1.Write("smp: timeout: ");
    com1.WriteDec(online);
    com1.Write(" of ");
    com1.WriteDec(expected);
    com1.Write(" CPUs online\r\n");
  }
  console_lock.Unlock();
}
