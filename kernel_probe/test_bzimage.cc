#include "kernel_probe/test_bzimage.h"

#include <cstring>

namespace kernel_probe::testing {
namespace {

template <typename T>
void Put(std::string& out, size_t offset, T value) {
  std::memcpy(out.data() + offset, &value, sizeof(T));
}

}  // namespace

std::string TestBzImage::Serialize() const {
  const uint64_t sects = setup_sects == 0 ? 4 : setup_sects;
  const uint64_t setup_bytes = (sects + 1) * 512;
  std::string out(setup_bytes + payload_size, '\0');
  for (uint64_t i = 0x290; i < setup_bytes; ++i) out[i] = '\x90';
  Put<uint8_t>(out, 0x1F1, setup_sects);
  Put<uint32_t>(
      out, 0x1F4,
      syssize ? *syssize : static_cast<uint32_t>((payload_size + 15) / 16));
  Put<uint16_t>(out, 0x1FE, boot_flag);
  Put<uint8_t>(out, 0x200, 0xEB);  // jmp short
  Put<uint8_t>(out, 0x201, header_len);
  std::memcpy(out.data() + 0x202, magic.data(),
              std::min<size_t>(4, magic.size()));
  Put<uint16_t>(out, 0x206, version);
  Put<uint8_t>(out, 0x211, loadflags);
  Put<uint32_t>(out, 0x22C, initrd_addr_max);
  Put<uint32_t>(out, 0x230, kernel_alignment);
  Put<uint8_t>(out, 0x234, relocatable);
  Put<uint8_t>(out, 0x235, 21);  // min_alignment
  Put<uint16_t>(out, 0x236, xloadflags);
  Put<uint32_t>(out, 0x238, cmdline_size);
  Put<uint64_t>(out, 0x258, pref_address);
  Put<uint32_t>(out, 0x260, init_size);
  for (uint64_t i = 0; i < payload_size; ++i)
    out[setup_bytes + i] = static_cast<char>(PayloadByte(i));
  return out;
}

}  // namespace kernel_probe::testing
