// Prints a marker, then spins forever with `pause`: a guest that never exits by
// itself, for stop/kill tests.
#include "guest/unixhv/unixhv.h"

extern "C" void unixhv_main(uint64_t) {
  unixhv::Serial com1;
  com1.Init();
  com1.Write("spin: spinning forever\r\n");
  for (;;) unixhv::Pause();
}
