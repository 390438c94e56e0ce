// Reboots itself through the i8042 reset line, then powers off: tests the
// worker's in-place reboot.
//
// Boots are told apart by a counter in CMOS RAM (byte 0x40, unused by PC
// firmware): the worker keeps the CMOS RTC's RAM across an in-place reboot, as
// a PC's battery-backed CMOS survives a reset, while guest RAM starts fresh.
// A new VM start begins with zeroed CMOS RAM.
//
// Each boot prints "reboot_once: boot N" and the RTC's date and time
// ("reboot_once: rtc 20YY-MM-DD hh:mm:ss"). The command line "reboots=K"
// (K = 0..9, default 1) sets how many reboots to do before powering off;
// "reboots=always" never stops rebooting (reboot-loop tests). If the reset is
// ignored it says so and powers off.
#include "guest/unixhv/unixhv.h"

namespace {

constexpr uint16_t kCmosIndex = 0x70;
constexpr uint16_t kCmosData = 0x71;
constexpr uint8_t kBootCounter = 0x40;
constexpr uint16_t kI8042Command = 0x64;
constexpr uint8_t kPulseReset = 0xFE;

uint8_t CmosRead(uint8_t index) {
  unixhv::Outb(kCmosIndex, index);
  return unixhv::Inb(kCmosData);
}

void CmosWrite(uint8_t index, uint8_t value) {
  unixhv::Outb(kCmosIndex, index);
  unixhv::Outb(kCmosData, value);
}

void WriteBcd(unixhv::Serial& com1, uint8_t bcd) {
  com1.PutChar(static_cast<char>('0' + (bcd >> 4)));
  com1.PutChar(static_cast<char>('0' + (bcd & 0xF)));
}

// -1 for "always", else the digit after "reboots=", else 1.
int RebootsWanted(const unixhv::CommandLine& cmdline) {
  static const char kKey[] = "reboots=";
  constexpr size_t kKeyLen = sizeof(kKey) - 1;
  if (cmdline.text == nullptr) return 1;
  for (size_t i = 0; i + kKeyLen < cmdline.length; ++i) {
    size_t j = 0;
    while (j < kKeyLen && cmdline.text[i + j] == kKey[j]) ++j;
    if (j != kKeyLen) continue;
    const char v = cmdline.text[i + kKeyLen];
    if (v == 'a') return -1;
    if (v >= '0' && v <= '9') return v - '0';
  }
  return 1;
}

}  // namespace

extern "C" void unixhv_main(uint64_t boot_params) {
  unixhv::Serial com1;
  com1.Init();
  const uint8_t boot = static_cast<uint8_t>(CmosRead(kBootCounter) + 1);
  CmosWrite(kBootCounter, boot);
  com1.Write("reboot_once: boot ");
  com1.WriteDec(boot);
  com1.Write("\r\n");

  // Register B is 24 h BCD after reset; wait out an update in progress.
  while (CmosRead(0x0A) & 0x80) unixhv::Pause();
  com1.Write("reboot_once: rtc ");
  WriteBcd(com1, CmosRead(0x32));
  WriteBcd(com1, CmosRead(0x09));
  com1.PutChar('-');
  WriteBcd(com1, CmosRead(0x08));
  com1.PutChar('-');
  WriteBcd(com1, CmosRead(0x07));
  com1.PutChar(' ');
  WriteBcd(com1, CmosRead(0x04));
  com1.PutChar(':');
  WriteBcd(com1, CmosRead(0x02));
  com1.PutChar(':');
  WriteBcd(com1, CmosRead(0x00));
  com1.Write("\r\n");

  const int wanted = RebootsWanted(unixhv::GetCommandLine(boot_params));
  if (wanted < 0 || boot <= wanted) {
    com1.Write("reboot_once: resetting through the i8042\r\n");
    unixhv::Outb(kI8042Command, kPulseReset);
    for (int i = 0; i < 1000000; ++i) unixhv::Pause();
    com1.Write("reboot_once: the reset was ignored\r\n");
    return;
  }
  com1.Write("reboot_once: done after ");
  com1.WriteDec(boot - 1);
  com1.Write(" reboot(s)\r\n");
}
