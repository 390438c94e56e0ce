#include "guest/unixhv/serial.h"

#include "guest/unixhv/io.h"

namespace unixhv {
namespace {

// 16550 register offsets and bits.
constexpr uint16_t kThr =
    0;  // transmit holding (DLAB=0) / divisor low (DLAB=1)
constexpr uint16_t kIer =
    1;  // interrupt enable (DLAB=0) / divisor high (DLAB=1)
constexpr uint16_t kFcr = 2;
constexpr uint16_t kLcr = 3;
constexpr uint16_t kMcr = 4;
constexpr uint16_t kLsr = 5;
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kLcr8N1 = 0x03;
constexpr uint8_t kLsrThrEmpty = 0x20;
// Give up waiting for THR-empty after this many polls and send anyway: a broken
// or absent UART must not hang the guest.
constexpr int kMaxPolls = 100000;

}  // namespace

void Serial::Init() {
  if (put_ != nullptr) return;
  Outb(base_ + kIer, 0x00);
  Outb(base_ + kLcr, kLcrDlab);
  Outb(base_ + kThr, 0x01);  // divisor 1: 115200 baud
  Outb(base_ + kIer, 0x00);
  Outb(base_ + kLcr, kLcr8N1);
  Outb(base_ + kFcr, 0xC7);  // enable + clear FIFOs, 14-byte trigger
  Outb(base_ + kMcr, 0x03);  // DTR, RTS
}

void Serial::PutChar(char c) {
  if (put_ != nullptr) {
    put_(c);
    return;
  }
  for (int i = 0; i < kMaxPolls && !(Inb(base_ + kLsr) & kLsrThrEmpty); ++i)
    Pause();
  Outb(base_ + kThr, static_cast<uint8_t>(c));
}

void Serial::Write(const char* s, size_t n) {
  for (size_t i = 0; i < n; ++i) PutChar(s[i]);
}

void Serial::Write(const char* s) {
  while (*s) PutChar(*s++);
}

void Serial::WriteHex(uint64_t v, int digits) {
  static const char kDigits[] = "0123456789abcdef";
  if (digits < 1) digits = 1;
  if (digits > 16) digits = 16;
  PutChar('0');
  PutChar('x');
  for (int i = digits - 1; i >= 0; --i) PutChar(kDigits[(v >> (i * 4)) & 0xF]);
}

void Serial::WriteDec(uint64_t v) {
  char buf[20];
  int n = 0;
  do {
    buf[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) PutChar(buf[--n]);
}

}  // namespace unixhv
