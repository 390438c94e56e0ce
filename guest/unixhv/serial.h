#ifndef HVSTACK_GUEST_UNIXHV_SERIAL_H_
#define HVSTACK_GUEST_UNIXHV_SERIAL_H_

#include <stddef.h>
#include <stdint.h>

namespace unixhv {

// A polled 16550 UART (no interrupts, no FIFO tricks): enough for a console.
class Serial {
 public:
  static constexpr uint16_t kCom1 = 0x3F8;

  constexpr explicit Serial(uint16_t base = kCom1) : base_(base) {}
  // A console that hands every character to `put` instead of a UART (lets
  // guest-library code that prints run in host-side tests).
  static Serial ToCallback(void (*put)(char)) {
    Serial s(0);
    s.put_ = put;
    return s;
  }

  // 115200 8N1, FIFOs on, interrupts off.
  void Init();
  void PutChar(char c);
  // Writes bytes as they are; no newline translation (send "\r\n" for a new
  // line).
  void Write(const char* s);
  void Write(const char* s, size_t n);
  // "0x" followed by `digits` hex digits.
  void WriteHex(uint64_t v, int digits = 16);
  void WriteDec(uint64_t v);

 private:
  uint16_t base_;
  void (*put_)(char) = nullptr;
};

}  // namespace unixhv

#endif  // HVSTACK_GUEST_UNIXHV_SERIAL_H_
