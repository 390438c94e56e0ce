// Prints a banner with the command line on COM1, then powers off.
#include "guest/unixhv/unixhv.h"

extern "C" void unixhv_main(uint64_t boot_params) {
  unixhv::Serial com1;
  com1.Init();
  com1.Write("hvstack hello guest\r\n");
  unixhv::CommandLine cmdline = unixhv::GetCommandLine(boot_params);
  com1.Write("command line: ");
  if (cmdline.error != nullptr) {
    com1.Write("(none: ");
    com1.Write(cmdline.error);
    com1.Write(")");
  } else {
    com1.Write(cmdline.text, cmdline.length);
  }
  com1.Write("\r\n");
}
