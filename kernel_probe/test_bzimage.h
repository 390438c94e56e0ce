#ifndef HVSTACK_KERNEL_PROBE_TEST_BZIMAGE_H_
#define HVSTACK_KERNEL_PROBE_TEST_BZIMAGE_H_

#include <cstdint>
#include <optional>
#include <string>

namespace kernel_probe::testing {

// Builds small bzImages for loader tests and fuzz seeds: a setup header with
// the fields the loader reads (valid by default, easy to corrupt), setup code
// filler, and a protected-mode part whose byte i is (i * 7) & 0xFF.
struct TestBzImage {
  uint8_t setup_sects = 4;
  uint16_t boot_flag = 0xAA55;
  std::string magic = "HdrS";
  uint16_t version = 0x020F;
  uint8_t header_len = 0x6A;   // byte 0x201: the header ends at 0x202 + this
  uint8_t loadflags = 0x01;    // LOADED_HIGH
  uint16_t xloadflags = 0x03;  // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
  uint8_t relocatable = 1;
  uint32_t kernel_alignment = 0x200000;
  uint64_t pref_address = 0x1000000;
  uint32_t init_size = 0x800000;
  uint32_t initrd_addr_max = 0x7FFFFFFF;
  uint32_t cmdline_size = 2047;
  uint64_t payload_size = 0x4000;
  std::optional<uint32_t> syssize;  // default: payload_size / 16, rounded up

  std::string Serialize() const;
  // The protected-mode part's byte at `offset`.
  static uint8_t PayloadByte(uint64_t offset) {
    return static_cast<uint8_t>(offset * 7);
  }
};

}  // namespace kernel_probe::testing

#endif  // HVSTACK_KERNEL_PROBE_TEST_BZIMAGE_H_
