// Reports its own crash through the Hyper-V crash MSRs, as Linux's hv_vmbus
// does on a panic: the tail of its log in a page (P3 = the page's address, P4
// = its length, CRASH_CTL = NOTIFY | NOTIFY_MSG), or parameters only
// (CRASH_CTL = NOTIFY). Then prints "crash: running after the report" and
// powers off, or spins (after=spin). A host that holds the guest at its
// report never lets that line out until the VM is resumed.
//
// Command line:
//   crash=message|params   how to report (default message)
//   text=WORD_WORD...      the panic line after "Kernel panic - not syncing: "
//                          ('_' becomes a space; default "hvstack_crash_test")
//   flood=N                report N times in a row (1-999, default 1)
//   after=poweroff|spin    what to do once running again (default poweroff)
#include "guest/unixhv/boot_params.h"
#include "guest/unixhv/hyperv.h"
#include "guest/unixhv/pages.h"
#include "guest/unixhv/unixhv.h"

namespace {

constexpr uint32_t kMsrCrashP0 = 0x40000100;
constexpr uint32_t kMsrCrashCtl = 0x40000105;
constexpr uint64_t kCrashCtlNotify = 1ull << 63;
constexpr uint64_t kCrashCtlNotifyMsg = 1ull << 62;
// CPUID 0x40000003 EDX: the crash MSRs are available.
constexpr uint32_t kFeatureGuestCrashMsrs = 1u << 10;

size_t Append(char* buf, size_t at, size_t cap, const char* s) {
  while (*s != 0 && at + 1 < cap) buf[at++] = *s++;
  buf[at] = 0;
  return at;
}

uint32_t ParseCount(const char* s) {
  uint32_t n = 0;
  while (*s >= '0' && *s <= '9' && n < 1000) n = n * 10 + (*s++ - '0');
  return n;
}

bool Equal(const char* a, const char* b) {
  while (*a != 0 && *a == *b) ++a, ++b;
  return *a == *b;
}

}  // namespace

extern "C" void unixhv_main(uint64_t boot_params) {
  unixhv::Serial con;
  con.Init();
  const unixhv::CommandLine cmdline = unixhv::GetCommandLine(boot_params);
  char mode[16] = "message";
  char text[128] = "hvstack_crash_test";
  char value[16];
  uint32_t flood = 1;
  bool spin_after = false;
  unixhv::CommandLineValue(cmdline, "crash=", mode, sizeof(mode));
  unixhv::CommandLineValue(cmdline, "text=", text, sizeof(text));
  if (unixhv::CommandLineValue(cmdline, "flood=", value, sizeof(value)))
    flood = ParseCount(value);
  if (flood < 1 || flood > 999) flood = 1;
  if (unixhv::CommandLineValue(cmdline, "after=", value, sizeof(value)))
    spin_after = Equal(value, "spin");
  for (char* c = text; *c != 0; ++c) {
    if (*c == '_') *c = ' ';
  }

  const unixhv::hv::Features f = unixhv::hv::Detect();
  if (!f.present || (f.features_edx & kFeatureGuestCrashMsrs) == 0) {
    con.Write("crash: no Hyper-V crash MSRs; powering off\r\n");
    unixhv_power_off();
  }
  // Linux's panic message: the log's last lines, as kmsg_dump gives them.
  auto* page = static_cast<char*>(unixhv::AllocPages(1));
  size_t n = 0;
  n = Append(page, n, 4096, "[    1.000000] crash: about to report\n");
  n = Append(page, n, 4096, "[    1.000001] Kernel panic - not syncing: ");
  n = Append(page, n, 4096, text);
  n = Append(page, n, 4096, "\n[    1.000002] Call Trace: (none)\n");

  con.Write("crash: reporting (");
  con.Write(mode);
  con.Write(")\r\n");
  const bool with_message = !Equal(mode, "params");
  for (uint32_t i = 0; i < flood; ++i) {
    if (with_message) {
      unixhv::hv::Wrmsr(kMsrCrashP0 + 0, 0);
      unixhv::hv::Wrmsr(kMsrCrashP0 + 1, 0);
      unixhv::hv::Wrmsr(kMsrCrashP0 + 2, 0);
      unixhv::hv::Wrmsr(kMsrCrashP0 + 3, reinterpret_cast<uint64_t>(page));
      unixhv::hv::Wrmsr(kMsrCrashP0 + 4, n);
      unixhv::hv::Wrmsr(kMsrCrashCtl, kCrashCtlNotify | kCrashCtlNotifyMsg);
    } else {
      unixhv::hv::Wrmsr(kMsrCrashP0 + 0, 0x1E);
      unixhv::hv::Wrmsr(kMsrCrashP0 + 1, 0x8100000000010000ull);
      unixhv::hv::Wrmsr(kMsrCrashP0 + 2, 0xFFFFFFFF81000000ull + i);
      unixhv::hv::Wrmsr(kMsrCrashP0 + 3, 0xDEAD);
      unixhv::hv::Wrmsr(kMsrCrashP0 + 4, 0x7000);
      unixhv::hv::Wrmsr(kMsrCrashCtl, kCrashCtlNotify);
    }
  }
  con.Write("crash: running after the report\r\n");
  if (!spin_after) unixhv_power_off();
  for (;;) unixhv::Pause();
}
