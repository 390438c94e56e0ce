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

bool CommandLineValue(const CommandLine& cmdline, const char* key, char* out,
                      size_t capacity) {
  if (cmdline.text == nullptr || capacity == 0) return false;
  size_t key_length = 0;
  while (key[key_length] != 0) ++key_length;
  for (size_t i = 0; i + key_length <= cmdline.length; ++i) {
    if (i > 0 && cmdline.text[i - 1] != ' ') continue;
    size_t k = 0;
    while (k < key_length && cmdline.text[i + k] == key[k]) ++k;
    if (k != key_length) continue;
    size_t n = 0;
    for (size_t j = i + k;
         j < cmdline.length && cmdline.text[j] != ' ' && n + 1 < capacity;
         ++j) {
      out[n++] = cmdline.text[j];
    }
    out[n] = 0;
    return n > 0;
  }
  return false;
}

}  // namespace unixhv
