#include "guest/unixhv/pages.h"

namespace unixhv {
namespace {

uint8_t pool[kPoolPages * kPageSize]
    __attribute__((section(".pages"), aligned(4096)));
size_t used = 0;

}  // namespace

void* AllocPages(size_t count) {
  if (count > kPoolPages - used) return nullptr;
  void* p = pool + used * kPageSize;
  used += count;
  return p;
}

void ZeroPage(void* page) {
  auto* words = static_cast<volatile uint64_t*>(page);
  for (size_t i = 0; i < kPageSize / 8; ++i) words[i] = 0;
}

}  // namespace unixhv
