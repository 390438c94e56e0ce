#include "guest/unixhv/pages.h"

namespace unixhv {
namespace {

uint8_t data_pool[kDataPoolPages * kPageSize]
    __attribute__((section(".pages"), aligned(4096)));
size_t data_used = 0;

}  // namespace

void* AllocDataPages(size_t count) {
  if (count > kDataPoolPages - data_used) return nullptr;
  void* p = data_pool + data_used * kPageSize;
  data_used += count;
  return p;
}

}  // namespace unixhv
