#include "guest/unixhv/boot_params.h"

namespace unixhv {
namespace {

uint32_t Load32(uint64_t addr) {
  return *reinterpret_cast<const volatile uint32_t*>(addr);
}

}  // namespace

CommandLine GetCommandLine(uint64_t boot_params) {
  if (boot_params == 0) return {nullptr, 0, "no boot_params (RSI was 0)"};
  uint64_t ptr =
      (static_cast<uint64_t>(Load32(boot_params + kBootParamsExtCmdLinePtr))
       << 32) |
      Load32(boot_params + kBootParamsCmdLinePtr);
  if (ptr == 0) return {"", 0, nullptr};
  if (ptr >= (4ull << 30))
    return {nullptr, 0, "command line above 4 GiB is not mapped"};
  size_t limit = kMaxCommandLine;
  uint32_t size = Load32(boot_params + kBootParamsCmdLineSize);
  if (size != 0 && size < limit) limit = size;
  // Never read past the 4 GiB identity map.
  if (ptr + limit > (4ull << 30)) limit = (4ull << 30) - ptr;
  const char* text = reinterpret_cast<const char*>(ptr);
  size_t n = 0;
  while (n < limit && text[n] != '\0') ++n;
  return {text, n, nullptr};
}

}  // namespace unixhv
