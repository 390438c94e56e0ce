// Echoes console lines: reads COM1 (polled), and for every line it receives
// (ended by CR or LF; empty lines are skipped) prints "echo: <line>\r\n".
// The line "poweroff" powers the VM off; "reboot" resets it through the i8042
// (vmms then starts a fresh worker and the console carries on). Used to test
// console input end to end (vmctl console -> vmms -> vmwp -> the UART's receive
// queue).
#include "guest/unixhv/unixhv.h"

namespace {

constexpr uint16_t kCom1 = unixhv::Serial::kCom1;
constexpr uint16_t kLsr = 5;
constexpr uint8_t kLsrDataReady = 0x01;
constexpr size_t kMaxLine = 256;

char ReadChar() {
  while (!(unixhv::Inb(kCom1 + kLsr) & kLsrDataReady)) unixhv::Pause();
  return static_cast<char>(unixhv::Inb(kCom1));
}

bool Equals(const char* a, size_t n, const char* b) {
  size_t i = 0;
  for (; i < n && b[i] != '\0'; ++i) {
    if (a[i] != b[i]) return false;
  }
  return i == n && b[i] == '\0';
}

}  // namespace

extern "C" void unixhv_main(uint64_t) {
  unixhv::Serial com1;
  com1.Init();
  com1.Write("echo: ready\r\n");
  char line[kMaxLine];
  size_t n = 0;
  while (true) {
    const char c = ReadChar();
    if (c != '\r' && c != '\n') {
      if (n < kMaxLine) line[n++] = c;
      continue;
    }
    if (n == 0) continue;
    com1.Write("echo: ");
    com1.Write(line, n);
    com1.Write("\r\n");
    if (Equals(line, n, "reboot")) {
      com1.Write("echo: rebooting\r\n");
      unixhv::Outb(0x64, 0xFE);  // i8042: pulse the reset line.
      while (true) unixhv::Pause();
    }
    if (Equals(line, n, "poweroff")) {
      com1.Write("echo: powering off\r\n");
      return;
    }
    n = 0;
  }
}
