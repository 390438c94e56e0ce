#include "vmwp/boot/boot_image.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "kernel_probe/test_bzimage.h"
#include "kernel_probe/test_elf.h"
#include "vmwp/loader/start_info.h"
#include "vmwp/loader/zero_page.h"

namespace vmwp {

using kernel_probe::KernelFormat;
using kernel_probe::testing::TestBzImage;
using kernel_probe::testing::TestElf;
using kernel_probe::testing::WriteTempFile;

namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::unique_ptr<vid::GuestMemory> Memory(uint64_t bytes) {
  absl::StatusOr<std::unique_ptr<vid::GuestMemory>> m =
      vid::GuestMemory::Create(bytes);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : nullptr;
}

template <typename T>
T Read(const vid::GuestMemory& memory, uint64_t gpa) {
  absl::StatusOr<T> v = memory.ReadObject<T>(gpa);
  EXPECT_TRUE(v.ok()) << v.status();
  return v.value_or(T{});
}

std::string ReadString(const vid::GuestMemory& memory, uint64_t gpa, size_t n) {
  std::string s(n, '\0');
  EXPECT_TRUE(memory.Read(gpa, {reinterpret_cast<uint8_t*>(s.data()), n}).ok());
  return s;
}

// Reads the e820 table back from a zero page.
std::vector<E820Entry> ZeroPageE820(const vid::GuestMemory& memory,
                                    uint64_t page) {
  std::vector<E820Entry> map(Read<uint8_t>(memory, page + 0x1E8));
  for (size_t i = 0; i < map.size(); ++i) {
    const uint64_t at = page + 0x2D0 + i * 20;
    map[i] = {Read<uint64_t>(memory, at), Read<uint64_t>(memory, at + 8),
              Read<uint32_t>(memory, at + 16)};
  }
  return map;
}

TEST(BootImageTest, ElfGuestGetsZeroPageAcpiAndE820) {
  auto memory = Memory(64ull << 20);
  ASSERT_NE(memory, nullptr);
  BootSpec spec;
  spec.kernel_path = WriteTempFile(TestElf::Simple().Serialize());
  spec.cmdline = "console=ttyS0 hello";
  spec.acpi.vcpu_count = 2;
  absl::StatusOr<BootImage> boot = LoadBootImage(spec, *memory);
  ASSERT_TRUE(boot.ok()) << boot.status();
  EXPECT_EQ(boot->format, KernelFormat::kElf64);
  EXPECT_EQ(boot->mode, BootEntryMode::kLongMode64);
  EXPECT_EQ(boot->entry, 0x100000u);
  EXPECT_EQ(boot->boot_params_gpa, 0x7000u);
  EXPECT_EQ(boot->rsdp_gpa, 0xE0000u);
  EXPECT_EQ(boot->acpi_start, 0xE0000u);
  EXPECT_EQ(boot->acpi_end, 0xE1000u);

  EXPECT_EQ(ReadString(*memory, 0x20000, spec.cmdline.size() + 1),
            spec.cmdline + std::string(1, '\0'));
  EXPECT_EQ(ReadString(*memory, 0xE0000, 8), "RSD PTR ");
  EXPECT_EQ(Read<uint64_t>(*memory, 0x7000 + 0x070), 0xE0000u);
  EXPECT_EQ(Read<uint32_t>(*memory, 0x7000 + 0x228), 0x20000u);
  EXPECT_EQ(Read<uint32_t>(*memory, 0x7000 + 0x218), 0u);  // no initrd
  EXPECT_EQ(Read<uint8_t>(*memory, 0x7000 + 0x210), 0xFF);
  EXPECT_EQ(Read<uint8_t>(*memory, 0x7000 + 0x211), 0x81);
  EXPECT_EQ(Read<uint16_t>(*memory, 0x7000 + 0x224), 0xFE00);

  const std::vector<E820Entry> expected = {
      {0, 0xF000, E820Entry::kReserved},
      {0xF000, 0x20000 - 0xF000, E820Entry::kRam},
      {0x20000, 0x1000, E820Entry::kReserved},
      {0x21000, 0x9FC00 - 0x21000, E820Entry::kRam},
      {0x9FC00, 0xE0000 - 0x9FC00, E820Entry::kReserved},
      {0xE0000, 0x1000, E820Entry::kAcpi},
      {0xE1000, 0x100000 - 0xE1000, E820Entry::kReserved},
      {0x100000, (64ull << 20) - 0x100000, E820Entry::kRam},
  };
  EXPECT_EQ(boot->e820, expected);
  EXPECT_EQ(ZeroPageE820(*memory, 0x7000), expected);
  EXPECT_THAT(
      FormatE820Lines(boot->e820),
      ElementsAre(
          "BIOS-e820: [mem 0x0000000000000000-0x000000000000efff] reserved",
          "BIOS-e820: [mem 0x000000000000f000-0x000000000001ffff] usable",
          "BIOS-e820: [mem 0x0000000000020000-0x0000000000020fff] reserved",
          "BIOS-e820: [mem 0x0000000000021000-0x000000000009fbff] usable",
          "BIOS-e820: [mem 0x000000000009fc00-0x00000000000dffff] reserved",
          "BIOS-e820: [mem 0x00000000000e0000-0x00000000000e0fff] ACPI data",
          "BIOS-e820: [mem 0x00000000000e1000-0x00000000000fffff] reserved",
          "BIOS-e820: [mem 0x0000000000100000-0x0000000003ffffff] usable"));
  EXPECT_THAT(DescribeBootImage(*boot), HasSubstr("ELF64 kernel: 64-bit"));
}

TEST(BootImageTest, BzImageWithInitrd) {
  auto memory = Memory(64ull << 20);
  ASSERT_NE(memory, nullptr);
  TestBzImage bz;
  BootSpec spec;
  spec.kernel_path = WriteTempFile(bz.Serialize(), "vmlinuz");
  std::string initrd(10000, '\0');
  for (size_t i = 0; i < initrd.size(); ++i) initrd[i] = static_cast<char>(i);
  spec.initrd_path = WriteTempFile(initrd, "initrd.gz");
  spec.cmdline = "console=ttyS0";
  absl::StatusOr<BootImage> boot = LoadBootImage(spec, *memory);
  ASSERT_TRUE(boot.ok()) << boot.status();
  EXPECT_EQ(boot->format, KernelFormat::kBzImage);
  EXPECT_EQ(boot->mode, BootEntryMode::kLongMode64);
  EXPECT_EQ(boot->entry, 0x1000200u);
  EXPECT_EQ(boot->kernel_start, 0x1000000u);
  EXPECT_EQ(boot->kernel_end, 0x1800000u);  // pref_address + init_size
  // The protected-mode part is at the load address.
  for (uint64_t off : {0ull, 0x200ull, 0x3FFFull})
    EXPECT_EQ(Read<uint8_t>(*memory, 0x1000000 + off),
              TestBzImage::PayloadByte(off));

  // The initrd: page-aligned, at the top of RAM.
  EXPECT_EQ(boot->initrd_size, 10000u);
  EXPECT_EQ(boot->initrd_gpa, ((64ull << 20) - 10000) & ~0xFFFull);
  EXPECT_EQ(ReadString(*memory, boot->initrd_gpa, initrd.size()), initrd);

  // The zero page: the kernel's setup header, then the loader's fields.
  const uint64_t zp = 0x7000;
  EXPECT_EQ(ReadString(*memory, zp + 0x202, 4), "HdrS");
  EXPECT_EQ(Read<uint16_t>(*memory, zp + 0x1FE), 0xAA55);
  EXPECT_EQ(Read<uint16_t>(*memory, zp + 0x206), 0x020F);
  EXPECT_EQ(Read<uint8_t>(*memory, zp + 0x1F1), 4);
  EXPECT_EQ(Read<uint32_t>(*memory, zp + 0x230), 0x200000u);
  EXPECT_EQ(Read<uint32_t>(*memory, zp + 0x238), 2047u);  // kernel's, kept
  EXPECT_EQ(Read<uint64_t>(*memory, zp + 0x258), 0x1000000u);
  EXPECT_EQ(Read<uint8_t>(*memory, zp + 0x210), 0xFF);
  EXPECT_EQ(Read<uint8_t>(*memory, zp + 0x211), 0x81);
  EXPECT_EQ(Read<uint16_t>(*memory, zp + 0x224), 0xFE00);
  EXPECT_EQ(Read<uint32_t>(*memory, zp + 0x228), 0x20000u);
  EXPECT_EQ(Read<uint32_t>(*memory, zp + 0x218), boot->initrd_gpa);
  EXPECT_EQ(Read<uint32_t>(*memory, zp + 0x21C), 10000u);
  EXPECT_EQ(Read<uint32_t>(*memory, zp + 0x0C0), 0u);
  EXPECT_EQ(Read<uint32_t>(*memory, zp + 0x0C4), 0u);
  EXPECT_EQ(Read<uint64_t>(*memory, zp + 0x070), 0xE0000u);
  EXPECT_EQ(ZeroPageE820(*memory, zp), boot->e820);
}

TEST(BootImageTest, InitrdRespectsInitrdAddrMax) {
  auto memory = Memory(256ull << 20);
  ASSERT_NE(memory, nullptr);
  TestBzImage bz;
  bz.initrd_addr_max = 0x3FFFFFF;  // 64 MiB - 1
  BootSpec spec;
  spec.kernel_path = WriteTempFile(bz.Serialize(), "vmlinuz");
  spec.initrd_path = WriteTempFile(std::string(5000, 'x'), "initrd");
  absl::StatusOr<BootImage> boot = LoadBootImage(spec, *memory);
  ASSERT_TRUE(boot.ok()) << boot.status();
  EXPECT_EQ(boot->initrd_gpa, 0x4000000u - 0x2000u);
  EXPECT_LE(boot->initrd_gpa + boot->initrd_size, 0x4000000u);
}

TEST(BootImageTest, InitrdThatOverlapsTheKernelIsRejected) {
  auto memory = Memory(64ull << 20);
  ASSERT_NE(memory, nullptr);
  TestBzImage bz;
  bz.initrd_addr_max = 0x1800FFF;  // only 4 KiB above init_size's end
  BootSpec spec;
  spec.kernel_path = WriteTempFile(bz.Serialize(), "vmlinuz");
  spec.initrd_path = WriteTempFile(std::string(8192, 'x'), "initrd");
  absl::StatusOr<BootImage> boot = LoadBootImage(spec, *memory);
  EXPECT_EQ(boot.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(boot.status().message()),
              HasSubstr("initrd " + spec.initrd_path +
                        ": 0x2000 bytes do not "
                        "fit between the kernel's end (0x1800000)"));
}

TEST(BootImageTest, InitrdLargerThanRamOrMissing) {
  auto memory = Memory(4ull << 20);
  ASSERT_NE(memory, nullptr);
  BootSpec spec;
  spec.kernel_path = WriteTempFile(TestElf::Simple().Serialize());
  spec.initrd_path = WriteTempFile(std::string(5 << 20, 'x'), "big.cpio");
  absl::StatusOr<BootImage> boot = LoadBootImage(spec, *memory);
  EXPECT_EQ(boot.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(boot.status().message()),
              HasSubstr("initrd " + spec.initrd_path));
  EXPECT_THAT(std::string(boot.status().message()),
              HasSubstr("larger than the guest's RAM (4 MiB)"));

  // Smaller than RAM but not below it once the kernel is there.
  spec.initrd_path = WriteTempFile(std::string(3 << 20, 'x'), "mid.cpio");
  boot = LoadBootImage(spec, *memory);
  EXPECT_EQ(boot.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(boot.status().message()),
              HasSubstr("give the VM more memory"));

  spec.initrd_path = "/no/such/initrd.gz";
  boot = LoadBootImage(spec, *memory);
  EXPECT_EQ(boot.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(boot.status().message()),
              HasSubstr("initrd /no/such/initrd.gz: cannot open"));
}

TEST(BootImageTest, CommandLineLimits) {
  auto memory = Memory(64ull << 20);
  ASSERT_NE(memory, nullptr);
  TestBzImage bz;
  bz.cmdline_size = 16;
  BootSpec spec;
  spec.kernel_path = WriteTempFile(bz.Serialize(), "vmlinuz");
  spec.cmdline = "console=ttyS0 quiet";  // 19 bytes
  absl::StatusOr<BootImage> boot = LoadBootImage(spec, *memory);
  EXPECT_EQ(boot.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(boot.status().message()),
              HasSubstr("command line is 19 bytes; kernel " + spec.kernel_path +
                        " accepts at most 16"));
  spec.cmdline = std::string(3000, 'a');
  EXPECT_THAT(std::string(LoadBootImage(spec, *memory).status().message()),
              HasSubstr("command line is 3000 bytes"));
  spec.cmdline = std::string("a\0b", 3);
  absl::StatusOr<BootImage> nul = LoadBootImage(spec, *memory);
  EXPECT_EQ(nul.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(nul.status().message()), HasSubstr("NUL byte"));
}

TEST(BootImageTest, PvhKernelGetsStartInfo) {
  auto memory = Memory(128ull << 20);
  ASSERT_NE(memory, nullptr);
  TestElf elf = TestElf::Simple(0x1000000, std::string(0x100, '\x90'), 0x1000);
  elf.AddNoteSegment(TestElf::PvhNote(0x1000040));
  BootSpec spec;
  spec.kernel_path = WriteTempFile(elf.Serialize(), "vmlinux");
  spec.initrd_path = WriteTempFile(std::string(4096 * 3, 'r'), "initrd");
  spec.cmdline = "console=ttyS0";
  spec.acpi.vcpu_count = 4;
  absl::StatusOr<BootImage> boot = LoadBootImage(spec, *memory);
  ASSERT_TRUE(boot.ok()) << boot.status();
  EXPECT_EQ(boot->format, KernelFormat::kElfPvh);
  EXPECT_EQ(boot->mode, BootEntryMode::kProtectedMode32);
  EXPECT_EQ(boot->entry, 0x1000040u);
  EXPECT_EQ(boot->boot_params_gpa, 0x7000u);
  EXPECT_EQ(boot->initrd_gpa, (128ull << 20) - 3 * 4096);

  const uint64_t si = 0x7000;
  EXPECT_EQ(Read<uint32_t>(*memory, si + 0), 0x336ec578u);
  EXPECT_EQ(Read<uint32_t>(*memory, si + 4), 1u);
  EXPECT_EQ(Read<uint32_t>(*memory, si + 12), 1u);
  const uint64_t modlist = Read<uint64_t>(*memory, si + 16);
  EXPECT_EQ(Read<uint64_t>(*memory, modlist), boot->initrd_gpa);
  EXPECT_EQ(Read<uint64_t>(*memory, modlist + 8), 3u * 4096);
  EXPECT_EQ(Read<uint64_t>(*memory, si + 24), 0x20000u);
  EXPECT_EQ(Read<uint64_t>(*memory, si + 32), 0xE0000u);
  const uint64_t memmap = Read<uint64_t>(*memory, si + 40);
  const uint32_t entries = Read<uint32_t>(*memory, si + 48);
  ASSERT_EQ(entries, boot->e820.size());
  for (uint32_t i = 0; i < entries; ++i) {
    const uint64_t at = memmap + i * 24;
    EXPECT_EQ(
        (E820Entry{Read<uint64_t>(*memory, at), Read<uint64_t>(*memory, at + 8),
                   Read<uint32_t>(*memory, at + 16)}),
        boot->e820[i]);
  }
  // The start_info and its tables are in reserved memory.
  EXPECT_EQ(boot->e820.front(), (E820Entry{0, 0xF000, E820Entry::kReserved}));
}

TEST(BootImageTest, PvhKernelWithoutPvhSupportUsesThe64BitEntry) {
  auto memory = Memory(64ull << 20);
  ASSERT_NE(memory, nullptr);
  TestElf elf = TestElf::Simple(0x1000000, std::string(0x100, '\x90'), 0x1000);
  elf.AddNoteSegment(TestElf::PvhNote(0x1000040));
  BootSpec spec;
  spec.kernel_path = WriteTempFile(elf.Serialize(), "vmlinux");
  spec.use_pvh_entry = false;
  absl::StatusOr<BootImage> boot = LoadBootImage(spec, *memory);
  ASSERT_TRUE(boot.ok()) << boot.status();
  EXPECT_EQ(boot->mode, BootEntryMode::kLongMode64);
  EXPECT_EQ(boot->entry, 0x1000000u);
  EXPECT_EQ(ReadString(*memory, 0x7000 + 0x202, 4), "HdrS");
}

TEST(BootImageTest, BadAcpiConfig) {
  auto memory = Memory(64ull << 20);
  ASSERT_NE(memory, nullptr);
  BootSpec spec;
  spec.kernel_path = WriteTempFile(TestElf::Simple().Serialize());
  spec.acpi.vcpu_count = 0;
  absl::StatusOr<BootImage> boot = LoadBootImage(spec, *memory);
  EXPECT_FALSE(boot.ok());
  EXPECT_THAT(std::string(boot.status().message()), HasSubstr("ACPI tables"));
}

TEST(PlaceInitrdTest, Edges) {
  EXPECT_EQ(PlaceInitrd("i", 4096, 0x200000, 0x400000).value_or(0), 0x3FF000u);
  EXPECT_EQ(PlaceInitrd("i", 4097, 0x200000, 0x400000).value_or(0), 0x3FE000u);
  EXPECT_EQ(PlaceInitrd("i", 0x200000, 0x200000, 0x400000).value_or(0),
            0x200000u);
  EXPECT_FALSE(PlaceInitrd("i", 0x200001, 0x200000, 0x400000).ok());
  EXPECT_FALSE(PlaceInitrd("i", ~0ull, 0x200000, 0x400000).ok());
  EXPECT_FALSE(PlaceInitrd("i", 4096, 0, 0x1000).ok());  // below 1 MiB
}

}  // namespace
}  // namespace vmwp
