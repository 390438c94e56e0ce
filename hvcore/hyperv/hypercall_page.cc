#include "hvcore/hyperv/hypercall_page.h"

namespace hvcore::hyperv {

std::array<uint8_t, kPageSize> BuildHypercallPage(uint16_t port) {
  std::array<uint8_t, kPageSize> page;
  // int3 everywhere else: a stray jump into the page traps in the guest
  // instead of running whatever zero bytes decode to.
  page.fill(0xCC);
  const uint8_t code[] = {
      0x48,
      0x89,
      0xD0,  // mov rax, rdx
      0x66,
      0xBA,                               // mov dx, imm16
      static_cast<uint8_t>(port & 0xFF),  //
      static_cast<uint8_t>(port >> 8),    //
      0xEF,                               // out dx, eax
      0xC3,                               // ret
  };
  for (std::size_t i = 0; i < sizeof(code); ++i) page[i] = code[i];
  return page;
}

}  // namespace hvcore::hyperv
