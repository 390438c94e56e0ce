// bzImage and PVH detection and validation: every malformed image is a clear
// INVALID_ARGUMENT naming the path and the problem, never a crash.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "kernel_probe/kernel_image.h"
#include "kernel_probe/test_bzimage.h"
#include "kernel_probe/test_elf.h"

namespace kernel_probe {
namespace {

using ::testing::HasSubstr;
using testing::TestBzImage;
using testing::TestElf;
using testing::WriteTempFile;

absl::StatusOr<KernelImageInfo> Probe(const std::string& contents) {
  return ProbeKernelImage(WriteTempFile(contents, "vmlinuz"));
}

void ExpectRejected(const std::string& contents, const std::string& problem) {
  const std::string path = WriteTempFile(contents, "vmlinuz");
  absl::StatusOr<KernelImageInfo> info = ProbeKernelImage(path);
  ASSERT_FALSE(info.ok()) << "expected rejection: " << problem;
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(info.status().message()),
              HasSubstr("kernel " + path + ": "));
  EXPECT_THAT(std::string(info.status().message()), HasSubstr(problem));
  // The in-memory probe agrees.
  absl::StatusOr<KernelImageInfo> mem = ProbeKernelImageBytes(
      {reinterpret_cast<const uint8_t*>(contents.data()), contents.size()},
      "mem");
  ASSERT_FALSE(mem.ok());
  EXPECT_THAT(std::string(mem.status().message()), HasSubstr(problem));
}

TEST(BzImageTest, AcceptsAValidImage) {
  TestBzImage bz;
  absl::StatusOr<KernelImageInfo> info = Probe(bz.Serialize());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->format, KernelFormat::kBzImage);
  ASSERT_TRUE(info->bzimage.has_value());
  const BzImageHeader& h = *info->bzimage;
  EXPECT_EQ(h.version, 0x020F);
  EXPECT_EQ(h.setup_sects, 4);
  EXPECT_EQ(h.setup_bytes, 5u * 512);
  EXPECT_EQ(h.payload_size, 0x4000u);
  EXPECT_TRUE(h.relocatable);
  EXPECT_EQ(h.kernel_alignment, 0x200000u);
  EXPECT_EQ(h.pref_address, 0x1000000u);
  EXPECT_EQ(h.init_size, 0x800000u);
  EXPECT_EQ(h.cmdline_size, 2047u);
  EXPECT_EQ(h.initrd_addr_max, 0x7FFFFFFFu);
  // The setup header is [0x1F1, 0x202 + 0x6A).
  ASSERT_EQ(h.setup_header.size(), 0x26Cu - 0x1F1u);
  EXPECT_EQ(std::memcmp(h.setup_header.data() + (0x202 - 0x1F1), "HdrS", 4), 0);
}

TEST(BzImageTest, SetupSectsZeroMeansFour) {
  TestBzImage bz;
  bz.setup_sects = 0;
  absl::StatusOr<KernelImageInfo> info = Probe(bz.Serialize());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->bzimage->setup_sects, 4);
  EXPECT_EQ(info->bzimage->setup_bytes, 5u * 512);
}

TEST(BzImageTest, LongHeaderIsClampedToBootParamsRoom) {
  TestBzImage bz;
  bz.header_len = 0xFF;  // would end at 0x301, past 0x290
  absl::StatusOr<KernelImageInfo> info = Probe(bz.Serialize());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->bzimage->setup_header.size(), 0x290u - 0x1F1u);
}

TEST(BzImageTest, Malformed) {
  {
    TestBzImage bz;
    bz.boot_flag = 0x1234;
    ExpectRejected(bz.Serialize(), "boot_flag 0x1234 at 0x1FE is not 0xAA55");
  }
  {
    TestBzImage bz;
    bz.version = 0x020A;
    ExpectRejected(bz.Serialize(), "boot protocol 2.10 is older than 2.12");
  }
  {
    TestBzImage bz;
    bz.xloadflags = 0;
    ExpectRejected(bz.Serialize(), "lack XLF_KERNEL_64");
  }
  {
    TestBzImage bz;
    bz.loadflags = 0;
    ExpectRejected(bz.Serialize(), "LOADED_HIGH");
  }
  {
    TestBzImage bz;
    bz.setup_sects = 200;
    ExpectRejected(bz.Serialize(), "setup_sects 200 is absurd");
  }
  {
    TestBzImage bz;
    bz.header_len = 0x20;
    ExpectRejected(bz.Serialize(), "before the fields of protocol 2.12");
  }
  {
    TestBzImage bz;
    bz.kernel_alignment = 0x300000;
    ExpectRejected(bz.Serialize(), "kernel_alignment 0x300000 is not a power");
  }
  {
    TestBzImage bz;
    bz.init_size = 0;
    ExpectRejected(bz.Serialize(), "init_size 0x0 is absurd");
  }
  {
    TestBzImage bz;
    bz.init_size = 0xF0000000;
    ExpectRejected(bz.Serialize(), "init_size 0xf0000000 is absurd");
  }
  {
    TestBzImage bz;
    bz.pref_address = 0xFFFFFFFFFFFFF000ull;
    ExpectRejected(bz.Serialize(), "pref_address 0xfffffffffffff000");
  }
  {
    TestBzImage bz;
    bz.pref_address = 0x1000;
    ExpectRejected(bz.Serialize(), "outside [1 MiB, 3 GiB)");
  }
  {
    TestBzImage bz;
    bz.syssize = 0x10000000;
    ExpectRejected(bz.Serialize(), "syssize says");
  }
  {
    TestBzImage bz;
    bz.syssize = 0;
    ExpectRejected(bz.Serialize(), "syssize is 0");
  }
}

TEST(BzImageTest, Truncated) {
  const std::string full = TestBzImage().Serialize();
  // Inside the header, inside the setup code, and right after it.
  ExpectRejected(full.substr(0, 0x204), "not a kernel image");
  ExpectRejected(full.substr(0, 0x230), "truncated");
  ExpectRejected(full.substr(0, 0x600), "truncated");
  ExpectRejected(full.substr(0, 5 * 512 + 0x100), "truncated");
  // Every prefix is rejected or accepted, never a crash.
  for (size_t n = 0; n < full.size(); n += 97) {
    absl::StatusOr<KernelImageInfo> info = ProbeKernelImageBytes(
        {reinterpret_cast<const uint8_t*>(full.data()), n});
    if (!info.ok()) {
      EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

TEST(BzImageTest, WrongMagicIsNotAKernel) {
  TestBzImage bz;
  bz.magic = "HdrX";
  ExpectRejected(bz.Serialize(),
                 "not a kernel image: not an ELF file (bad "
                 "magic) and no bzImage setup header");
}

TEST(PlaceBzImageTest, PrefAddressWhenItFits) {
  TestBzImage bz;
  bz.init_size = 0x3378000;  // Debian's
  absl::StatusOr<BzImageHeader> h = ParseBzImageHeader(
      {reinterpret_cast<const uint8_t*>(bz.Serialize().data()), 0x290},
      bz.Serialize().size());
  ASSERT_TRUE(h.ok()) << h.status();
  absl::StatusOr<BzImagePlacement> p = PlaceBzImage(*h, 256ull << 20);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->load_address, 0x1000000u);
  EXPECT_EQ(p->entry64, 0x1000200u);
  EXPECT_EQ(p->runtime_start, 0x1000000u);
  EXPECT_EQ(p->start, 0x1000000u);
  EXPECT_EQ(p->end, 0x1000000u + 0x3378000u);
  // 64 MiB: the kernel still runs at pref_address and needs 67.5 MiB.
  absl::StatusOr<BzImagePlacement> small = PlaceBzImage(*h, 64ull << 20);
  ASSERT_FALSE(small.ok());
  EXPECT_THAT(std::string(small.status().message()),
              HasSubstr("give the VM more memory"));
}

TEST(PlaceBzImageTest, NonRelocatableLoadsAtOneMiBAndRunsAtPrefAddress) {
  TestBzImage bz;
  bz.relocatable = 0;
  const std::string bytes = bz.Serialize();
  absl::StatusOr<BzImageHeader> h = ParseBzImageHeader(
      {reinterpret_cast<const uint8_t*>(bytes.data()), 0x290}, bytes.size());
  ASSERT_TRUE(h.ok()) << h.status();
  absl::StatusOr<BzImagePlacement> p = PlaceBzImage(*h, 64ull << 20);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->load_address, 0x100000u);
  EXPECT_EQ(p->entry64, 0x100200u);
  EXPECT_EQ(p->runtime_start, 0x1000000u);
  EXPECT_EQ(p->start, 0x100000u);
  EXPECT_EQ(p->end, 0x1800000u);
}

TEST(PlaceBzImageTest, CheckKernelFitsMemoryUsesThePlacement) {
  TestBzImage bz;
  const std::string path = WriteTempFile(bz.Serialize(), "vmlinuz");
  absl::StatusOr<KernelImageInfo> info = ProbeKernelImage(path);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(CheckKernelFitsMemory(path, *info, 64ull << 20).ok());
  absl::Status s = CheckKernelFitsMemory(path, *info, 16ull << 20);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("kernel " + path + ": "));
  EXPECT_THAT(std::string(s.message()), HasSubstr("(16 MiB)"));
}

// ------------------------------------------------------------------ PVH

TEST(PvhNoteTest, FindsTheEntryAmongOtherNotes) {
  const std::string notes = TestElf::Note("Xen", 6, "linux") +
                            TestElf::Note("GNU", 3, std::string(20, 'x')) +
                            TestElf::PvhNote(0x1000850, 8) +
                            TestElf::Note("Linux", 1, "abcd");
  absl::StatusOr<std::optional<uint64_t>> entry = FindPvhEntry(
      {reinterpret_cast<const uint8_t*>(notes.data()), notes.size()});
  ASSERT_TRUE(entry.ok()) << entry.status();
  ASSERT_TRUE(entry->has_value());
  EXPECT_EQ(**entry, 0x1000850u);
}

TEST(PvhNoteTest, FourByteValue) {
  const std::string notes = TestElf::PvhNote(0x100040, 4);
  absl::StatusOr<std::optional<uint64_t>> entry = FindPvhEntry(
      {reinterpret_cast<const uint8_t*>(notes.data()), notes.size()});
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->value_or(0), 0x100040u);
}

TEST(PvhNoteTest, NoneIsNotAnError) {
  const std::string notes = TestElf::Note("Xen", 17, "abcd") + "\0\0\0";
  absl::StatusOr<std::optional<uint64_t>> entry = FindPvhEntry(
      {reinterpret_cast<const uint8_t*>(notes.data()), notes.size()});
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_FALSE(entry->has_value());
}

TEST(PvhNoteTest, Malformed) {
  auto find = [](const std::string& notes) {
    return FindPvhEntry(
        {reinterpret_cast<const uint8_t*>(notes.data()), notes.size()});
  };
  std::string huge_name = TestElf::PvhNote(0x100000);
  huge_name[0] = '\xff';  // namesz 0xff
  EXPECT_THAT(std::string(find(huge_name).status().message()),
              HasSubstr("name size 255 runs past the end"));
  std::string huge_desc = TestElf::PvhNote(0x100000);
  std::memset(huge_desc.data() + 4, 0xff, 4);
  EXPECT_THAT(std::string(find(huge_desc).status().message()),
              HasSubstr("description size 4294967295 runs past"));
  EXPECT_THAT(
      std::string(find(TestElf::PvhNote(0x100000000ull)).status().message()),
      HasSubstr("not a 32-bit address"));
  EXPECT_THAT(
      std::string(find(TestElf::Note("Xen", 18, "abc")).status().message()),
      HasSubstr("3-byte value"));
}

TEST(PvhElfTest, VmlinuxWithPvhNote) {
  TestElf elf = TestElf::Simple(0x1000000, std::string(0x100, '\x90'), 0x1000);
  elf.AddNoteSegment(TestElf::Note("Xen", 6, "linux") +
                     TestElf::PvhNote(0x1000040));
  absl::StatusOr<KernelImageInfo> info = Probe(elf.Serialize());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->format, KernelFormat::kElfPvh);
  EXPECT_EQ(info->pvh_entry.value_or(0), 0x1000040u);
  EXPECT_EQ(info->entry, 0x1000000u);
  EXPECT_EQ(info->segments.size(), 1u);
}

TEST(PvhElfTest, PlainElfHasNoPvhEntry) {
  TestElf elf = TestElf::Simple();
  elf.AddNoteSegment(TestElf::Note("GNU", 3, "build-id"));
  absl::StatusOr<KernelImageInfo> info = Probe(elf.Serialize());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->format, KernelFormat::kElf64);
  EXPECT_FALSE(info->pvh_entry.has_value());
}

TEST(PvhElfTest, EntryOutsideTheKernel) {
  TestElf elf = TestElf::Simple(0x1000000, "\x90\xf4", 0x10);
  elf.AddNoteSegment(TestElf::PvhNote(0x2000000));
  ExpectRejected(elf.Serialize(),
                 "PVH entry 0x2000000 (Xen PHYS32_ENTRY note) is not inside");
}

TEST(PvhElfTest, BrokenNoteSegment) {
  TestElf elf = TestElf::Simple();
  std::string note = TestElf::PvhNote(0x100000);
  note[0] = '\x40';
  elf.AddNoteSegment(note);
  ExpectRejected(elf.Serialize(), "PT_NOTE segment 1: note at offset 0x0");
  TestElf beyond = TestElf::Simple();
  beyond.AddNoteSegment(TestElf::PvhNote(0x100000));
  beyond.segments.back().phdr.p_filesz = 1ull << 40;
  ExpectRejected(beyond.Serialize(), "PT_NOTE segment 1: file range");
}

TEST(ElfTest, EntryOutsideRamAndAbsurdSizes) {
  TestElf far = TestElf::Simple();
  far.ehdr.e_entry = 0xFFFFFFFFFFFF0000ull;
  ExpectRejected(far.Serialize(), "entry point 0xffffffffffff0000 is not");
  TestElf huge = TestElf::Simple();
  huge.segments[0].phdr.p_memsz = 1ull << 62;
  ExpectRejected(huge.Serialize(), "memory size 0x4000000000000000 is larger");
}

TEST(InitrdTest, Probe) {
  const std::string path = WriteTempFile(std::string(8192, 'i'), "initrd");
  absl::StatusOr<uint64_t> size = ProbeInitrd(path, 64ull << 20);
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, 8192u);
  absl::StatusOr<uint64_t> big = ProbeInitrd(path, 4096);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(big.status().message()),
              HasSubstr("initrd " + path + ": 8192 bytes"));
  EXPECT_THAT(std::string(big.status().message()),
              HasSubstr("larger than the guest's RAM"));
  EXPECT_THAT(
      std::string(ProbeInitrd("/no/such/initrd", 1 << 20).status().message()),
      HasSubstr("initrd /no/such/initrd: cannot open"));
  EXPECT_THAT(
      std::string(
          ProbeInitrd(WriteTempFile("", "empty"), 1 << 20).status().message()),
      HasSubstr("empty"));
}

}  // namespace
}  // namespace kernel_probe
