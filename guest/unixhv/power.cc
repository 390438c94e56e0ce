#include "guest/unixhv/power.h"

#include "guest/unixhv/io.h"

extern "C" [[noreturn]] void unixhv_power_off() {
  unixhv::Outw(unixhv::kPm1aControlPort, unixhv::kPm1aPowerOff);
  for (;;) asm volatile("cli; hlt");
}
