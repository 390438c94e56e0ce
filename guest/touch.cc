// Fills part of its RAM with a pattern, then ticks: the guest of the
// save/restore benchmark (issue 14), whose saved memory is `touch_mib` MiB of
// non-zero pages.
//
//   touch: filling <n> MiB from <m> MiB
//   touch: done
//   touch: tick <k> ok              (every `tick_ms`)
//   touch: tick <k> BAD page 0x...  (a page no longer holds its pattern)
//
// Every 8-byte word of the filled range holds its own address XOR a constant,
// so every page is distinct and non-zero. Each tick checks one page of the
// range (the next one each time) word by word: after a restore the guest
// keeps counting from where it was and still finds its pattern. Command line:
// "touch_mib=<n>" (default 16), "from_mib=<m>" (default 16), "tick_ms=<t>"
// (default 50). The range must lie below 3 GiB (the boot page tables map the
// first 4 GiB; RAM above 3 GiB sits at 4 GiB).
#include "guest/unixhv/boot_params.h"
#include "guest/unixhv/cpu.h"
#include "guest/unixhv/unixhv.h"

namespace {

constexpr uint64_t kPattern = 0x5a5a'0000'c3c3'0000ull;
constexpr uint64_t kPage = 4096;

uint64_t Number(const unixhv::CommandLine& cmdline, const char* key,
                uint64_t fallback) {
  char text[24];
  if (!unixhv::CommandLineValue(cmdline, key, text, sizeof(text)))
    return fallback;
  uint64_t v = 0;
  for (const char* p = text; *p >= '0' && *p <= '9'; ++p)
    v = v * 10 + static_cast<uint64_t>(*p - '0');
  return v;
}

}  // namespace

extern "C" void unixhv_main(uint64_t boot_params) {
  unixhv::Serial com1;
  com1.Init();
  const unixhv::CommandLine cmdline = unixhv::GetCommandLine(boot_params);
  const uint64_t touch_mib = Number(cmdline, "touch_mib=", 16);
  const uint64_t from_mib = Number(cmdline, "from_mib=", 16);
  const uint64_t tick_ms = Number(cmdline, "tick_ms=", 50);
  if (from_mib < 2 || from_mib + touch_mib > 3072) {
    com1.Write("touch: the range must lie in [2 MiB, 3 GiB)\r\n");
    return;
  }
  com1.Write("touch: filling ");
  com1.WriteDec(touch_mib);
  com1.Write(" MiB from ");
  com1.WriteDec(from_mib);
  com1.Write(" MiB\r\n");
  const uint64_t begin = from_mib << 20;
  const uint64_t end = (from_mib + touch_mib) << 20;
  for (uint64_t a = begin; a < end; a += 8)
    *reinterpret_cast<volatile uint64_t*>(a) = a ^ kPattern;
  com1.Write("touch: done\r\n");

  const uint32_t khz = unixhv::TscKhzFromHypervisor();
  const uint64_t ticks_per_ms = khz != 0 ? khz : 3'000'000;
  const uint64_t pages = (end - begin) / kPage;
  uint64_t next = unixhv::Rdtsc();
  for (uint64_t k = 1;; ++k) {
    next += tick_ms * ticks_per_ms;
    while (static_cast<int64_t>(unixhv::Rdtsc() - next) < 0) unixhv::Pause();
    com1.Write("touch: tick ");
    com1.WriteDec(k);
    if (pages == 0) {
      com1.Write(" ok\r\n");
      continue;
    }
    const uint64_t page = begin + (k % pages) * kPage;
    bool good = true;
    for (uint64_t a = page; a < page + kPage; a += 8)
      good &= *reinterpret_cast<volatile uint64_t*>(a) == (a ^ kPattern);
    if (good) {
      com1.Write(" ok\r\n");
    } else {
      com1.Write(" BAD page 0x");
      com1.WriteHex(page);
      com1.Write("\r\n");
    }
  }
}
