#ifndef HVSTACK_GUEST_UNIXHV_BOOT_PARAMS_H_
#define HVSTACK_GUEST_UNIXHV_BOOT_PARAMS_H_

#include <stddef.h>
#include <stdint.h>

// Reading Linux's zero page (struct boot_params,
// Documentation/x86/zero-page.rst). Only the fields UnixHv needs, by offset;
// the VMM is trusted to have put a zero page at the address RSI held on entry,
// but its contents are still bounded before use.
namespace unixhv {

// Offsets into boot_params.
inline constexpr uint64_t kBootParamsExtCmdLinePtr =
    0x0C8;  // u32: bits 63..32 of the pointer
inline constexpr uint64_t kBootParamsCmdLinePtr =
    0x228;  // hdr.cmd_line_ptr, u32: bits 31..0
inline constexpr uint64_t kBootParamsCmdLineSize =
    0x238;  // hdr.cmdline_size, u32

// The longest command line we read (Linux's x86 COMMAND_LINE_SIZE is 2048).
inline constexpr size_t kMaxCommandLine = 2048;

struct CommandLine {
  const char* text;  // not NUL-terminated necessarily; use `length`
  size_t length;
  // Null text and a reason when there is no usable command line.
  const char* error;
};

// The command line the loader passed. Stops at the first NUL, at
// hdr.cmdline_size if the loader set it, and at kMaxCommandLine. Lines above 4
// GiB are refused: the boot page tables only map the first 4 GiB.
CommandLine GetCommandLine(uint64_t boot_params);

// The value of `key=` (key includes the '=', and starts a word of the line)
// copied into `out`, NUL-terminated; false if absent or empty.
bool CommandLineValue(const CommandLine& cmdline, const char* key, char* out,
                      size_t capacity);

}  // namespace unixhv

#endif  // HVSTACK_GUEST_UNIXHV_BOOT_PARAMS_H_
