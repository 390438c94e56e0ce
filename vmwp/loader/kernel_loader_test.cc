#include "vmwp/loader/kernel_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "hvcore/boot_layout.h"
#include "kernel_probe/guest_layout.h"
#include "kernel_probe/test_bzimage.h"
#include "kernel_probe/test_elf.h"
#include "vmwp/loader/zero_page.h"

namespace vmwp {

using kernel_probe::GpaRange;
using kernel_probe::GuestRamRanges;
using kernel_probe::kBootStructuresEnd;
using kernel_probe::kCmdlineAddress;
using kernel_probe::kHighRamStart;
using kernel_probe::kLowRamEnd;
using kernel_probe::kZeroPageAddress;
using kernel_probe::testing::TestBzImage;
using kernel_probe::testing::TestElf;
using kernel_probe::testing::WriteTempFile;

namespace {

using ::testing::HasSubstr;

// The loader's constants must agree with the layers that really set the machine
// up.
static_assert(kZeroPageAddress == hvcore::kBootZeroPageAddress);
static_assert(kBootStructuresEnd == hvcore::kBootReservedEnd);
static_assert(kCmdlineAddress >= hvcore::kBootReservedEnd);
static_assert(kLowRamEnd == vid::GuestMemory::kLowRamEnd);
static_assert(kHighRamStart == vid::GuestMemory::kHighRamStart);

std::unique_ptr<vid::GuestMemory> Memory(uint64_t bytes) {
  absl::StatusOr<std::unique_ptr<vid::GuestMemory>> m =
      vid::GuestMemory::Create(bytes);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : nullptr;
}

TEST(GuestLayoutTest, MatchesGuestMemoryRegions) {
  for (uint64_t size :
       {2ull << 20, 64ull << 20, 3ull << 30, (3ull << 30) + (2ull << 20)}) {
    std::vector<GpaRange> ranges = GuestRamRanges(size);
    if (size > (1ull << 30))
      continue;  // Don't map gigabytes in a unit test; the math is shared.
    auto memory = Memory(size);
    ASSERT_NE(memory, nullptr);
    ASSERT_EQ(ranges.size(), memory->regions().size());
    for (size_t i = 0; i < ranges.size(); ++i) {
      EXPECT_EQ(ranges[i].start, memory->regions()[i].gpa);
      EXPECT_EQ(ranges[i].end - ranges[i].start, memory->regions()[i].size);
    }
  }
  EXPECT_EQ(GuestRamRanges((3ull << 30) + (2ull << 20)).back().end,
            (4ull << 30) + (2ull << 20));
}

TEST(LoadKernelTest, CopiesSegmentsAndZeroesBss) {
  auto memory = Memory(16ull << 20);
  ASSERT_NE(memory, nullptr);
  // Dirty the bss area first: the loader must clear it.
  ASSERT_TRUE(memory->Fill(0x100000, 0x3000, 0xCC).ok());
  TestElf elf = TestElf::Simple(0x100000, "\x90\x90\xf4", 0x1000);
  elf.AddSegment(0x200000, "DATA", 0x10, PF_R | PF_W);
  elf.ehdr.e_entry = 0x100001;
  const std::string path = WriteTempFile(elf.Serialize());
  absl::StatusOr<LoadedKernel> k = LoadKernel(path, *memory);
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(k->entry, 0x100001u);
  uint8_t code[3];
  ASSERT_TRUE(memory->Read(0x100000, code).ok());
  EXPECT_EQ(std::memcmp(code, "\x90\x90\xf4", 3), 0);
  std::vector<uint8_t> bss(0x1000);
  ASSERT_TRUE(memory->Read(0x100003, bss).ok());
  EXPECT_EQ(std::count(bss.begin(), bss.end(), 0), 0x1000);
  uint8_t after;
  ASSERT_TRUE(memory->Read(0x101003, {&after, 1}).ok());
  EXPECT_EQ(after, 0xCC) << "bytes past memsz are untouched";
  char data[5] = {};
  ASSERT_TRUE(
      memory->Read(0x200000, {reinterpret_cast<uint8_t*>(data), 4}).ok());
  EXPECT_STREQ(data, "DATA");
}

TEST(LoadKernelTest, SegmentOutsideRam) {
  auto memory = Memory(4ull << 20);
  ASSERT_NE(memory, nullptr);
  const std::string path = WriteTempFile(TestElf::Simple(0x800000).Serialize());
  absl::StatusOr<LoadedKernel> k = LoadKernel(path, *memory);
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(k.status().message()),
              HasSubstr("does not fit in the guest's RAM"));
}

TEST(LoadKernelTest, BadImageIsInvalidArgument) {
  auto memory = Memory(4ull << 20);
  ASSERT_NE(memory, nullptr);
  const std::string path = WriteTempFile("garbage");
  absl::StatusOr<LoadedKernel> k = LoadKernel(path, *memory);
  EXPECT_EQ(k.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(k.status().message(),
            "kernel " + path +
                ": not a kernel image: not an ELF file (bad magic) and no "
                "bzImage setup header (\"HdrS\" at 0x202)");
}

TEST(LoadKernelTest, BzImageGoesToItsPlacement) {
  auto memory = Memory(64ull << 20);
  ASSERT_NE(memory, nullptr);
  TestBzImage bz;
  const std::string path = WriteTempFile(bz.Serialize(), "vmlinuz");
  absl::StatusOr<LoadedKernel> k = LoadKernel(path, *memory);
  ASSERT_TRUE(k.ok()) << k.status();
  ASSERT_TRUE(k->placement.has_value());
  EXPECT_EQ(k->placement->load_address, 0x1000000u);
  EXPECT_EQ(k->entry, 0x1000200u);
  EXPECT_EQ(k->start, 0x1000000u);
  EXPECT_EQ(k->end, 0x1800000u);
  ASSERT_EQ(k->image.segments.size(), 1u);
  EXPECT_EQ(k->image.segments[0].file_offset, 5u * 512);
  std::vector<uint8_t> loaded(bz.payload_size);
  ASSERT_TRUE(memory->Read(0x1000000, loaded).ok());
  for (size_t i = 0; i < loaded.size(); ++i)
    ASSERT_EQ(loaded[i], TestBzImage::PayloadByte(i)) << i;
  // Too little RAM for pref_address + init_size.
  auto small = Memory(16ull << 20);
  ASSERT_NE(small, nullptr);
  absl::StatusOr<LoadedKernel> no = LoadKernel(path, *small);
  EXPECT_EQ(no.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no.status().message()),
              HasSubstr("give the VM more memory"));
}

}  // namespace
}  // namespace vmwp
