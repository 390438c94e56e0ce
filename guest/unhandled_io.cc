// Touches a port and an MMIO address nobody emulates. An empty bus reads as all
// ones and drops writes; the VMM must keep the guest running. Prints what it
// read so a test can check it.
#include "guest/unixhv/unixhv.h"

namespace {

// Port 0x6F0 has no standard PC device; 0xE0000000 is in the MMIO hole below 4
// GiB.
constexpr uint16_t kUnhandledPort = 0x6F0;
constexpr uint64_t kUnbackedMmio = 0xE0000000;

}  // namespace

extern "C" void unixhv_main(uint64_t) {
  unixhv::Serial com1;
  com1.Init();
  com1.Write("unhandled_io: start\r\n");

  com1.Write("port inb: ");
  com1.WriteHex(unixhv::Inb(kUnhandledPort), 2);
  com1.Write("\r\nport inw: ");
  com1.WriteHex(unixhv::Inw(kUnhandledPort), 4);
  com1.Write("\r\nport inl: ");
  com1.WriteHex(unixhv::Inl(kUnhandledPort), 8);
  com1.Write("\r\nmmio read32: ");
  com1.WriteHex(unixhv::MmioRead32(kUnbackedMmio), 8);
  com1.Write("\r\nmmio read64: ");
  com1.WriteHex(unixhv::MmioRead64(kUnbackedMmio + 8), 16);
  com1.Write("\r\n");

  unixhv::Outb(kUnhandledPort, 0x12);
  unixhv::Outl(kUnhandledPort, 0x12345678);
  unixhv::MmioWrite32(kUnbackedMmio, 0xDEADBEEF);
  unixhv::MmioWrite64(kUnbackedMmio + 8, 0x0123456789ABCDEFull);

  com1.Write("unhandled_io: writes done, still running\r\n");
}
