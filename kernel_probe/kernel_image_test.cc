#include "kernel_probe/kernel_image.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kernel_probe/test_elf.h"

namespace kernel_probe {
namespace {

using ::testing::HasSubstr;
using testing::TestElf;
using testing::WriteTempFile;

// Probes `contents` and expects InvalidArgument "kernel <path>:
// <...problem...>".
void ExpectRejected(const std::string& contents, const std::string& problem) {
  const std::string path = WriteTempFile(contents);
  absl::StatusOr<KernelImageInfo> info = ProbeKernelImage(path);
  ASSERT_FALSE(info.ok()) << "expected rejection: " << problem;
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(info.status().message()),
              HasSubstr("kernel " + path + ": "));
  EXPECT_THAT(std::string(info.status().message()), HasSubstr(problem));
}

TEST(ProbeKernelImageTest, AcceptsAGoodImage) {
  TestElf elf = TestElf::Simple(0x100000, "\x90\x90\xf4", 0x1000);
  elf.AddSegment(0x200000, "data", 0x2000, PF_R | PF_W);
  const std::string path = WriteTempFile(elf.Serialize());
  absl::StatusOr<KernelImageInfo> info = ProbeKernelImage(path);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->entry, 0x100000u);
  ASSERT_EQ(info->segments.size(), 2u);
  EXPECT_EQ(info->segments[0].gpa, 0x100000u);
  EXPECT_EQ(info->segments[0].file_size, 3u);
  EXPECT_EQ(info->segments[0].mem_size, 0x1003u);
  EXPECT_TRUE(info->segments[0].executable);
  EXPECT_EQ(info->segments[1].gpa, 0x200000u);
  EXPECT_FALSE(info->segments[1].executable);
}

TEST(ProbeKernelImageTest, MissingFile) {
  absl::StatusOr<KernelImageInfo> info =
      ProbeKernelImage("/nonexistent/vmlinux");
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      info.status().message(),
      "kernel /nonexistent/vmlinux: cannot open: No such file or directory");
}

TEST(ProbeKernelImageTest, Directory) {
  absl::StatusOr<KernelImageInfo> info = ProbeKernelImage("/tmp");
  ASSERT_FALSE(info.ok());
  EXPECT_THAT(std::string(info.status().message()),
              HasSubstr("not a regular file"));
}

TEST(ProbeKernelImageTest, EmptyFile) {
  ExpectRejected("", "not an ELF file (bad magic)");
}

TEST(ProbeKernelImageTest, BadMagic) {
  std::string bytes = TestElf::Simple().Serialize();
  bytes[1] = 'X';
  ExpectRejected(bytes, "not an ELF file (bad magic)");
  ExpectRejected("#!/bin/sh\necho hello\n" + std::string(100, ' '),
                 "not an ELF file (bad magic)");
}

TEST(ProbeKernelImageTest, TruncatedHeader) {
  ExpectRejected(TestElf::Simple().Serialize().substr(0, 40), "truncated");
}

TEST(ProbeKernelImageTest, TruncatedProgramHeaders) {
  ExpectRejected(TestElf::Simple().Serialize().substr(0, 70),
                 "program header table");
}

TEST(ProbeKernelImageTest, TruncatedSegment) {
  TestElf elf = TestElf::Simple(0x100000, std::string(0x800, '\x90'));
  std::string bytes = elf.Serialize();
  ExpectRejected(bytes.substr(0, bytes.size() - 1),
                 "beyond the end of the file");
}

TEST(ProbeKernelImageTest, WrongClass) {
  TestElf elf = TestElf::Simple();
  elf.ehdr.e_ident[EI_CLASS] = ELFCLASS32;
  ExpectRejected(elf.Serialize(), "ELF class 1 is not ELFCLASS64");
}

TEST(ProbeKernelImageTest, BigEndian) {
  TestElf elf = TestElf::Simple();
  elf.ehdr.e_ident[EI_DATA] = ELFDATA2MSB;
  ExpectRejected(elf.Serialize(), "not little-endian");
}

TEST(ProbeKernelImageTest, WrongMachine) {
  TestElf elf = TestElf::Simple();
  elf.ehdr.e_machine = EM_AARCH64;
  ExpectRejected(elf.Serialize(), "ELF machine 183 is not x86-64");
}

TEST(ProbeKernelImageTest, NotAnExecutable) {
  TestElf elf = TestElf::Simple();
  elf.ehdr.e_type = ET_DYN;
  ExpectRejected(elf.Serialize(), "ELF type 3 is not ET_EXEC");
}

TEST(ProbeKernelImageTest, BadProgramHeaderEntrySize) {
  TestElf elf = TestElf::Simple();
  elf.ehdr.e_phentsize = 32;
  ExpectRejected(elf.Serialize(), "program header entry size 32");
}

TEST(ProbeKernelImageTest, TooManyProgramHeaders) {
  TestElf elf = TestElf::Simple();
  elf.ehdr.e_phnum = 0xFFFF;
  ExpectRejected(elf.Serialize(), "65535 program headers");
}

TEST(ProbeKernelImageTest, NoLoadableSegments) {
  TestElf elf = TestElf::Simple();
  elf.segments[0].phdr.p_type = PT_NOTE;
  ExpectRejected(elf.Serialize(), "no loadable (PT_LOAD) segments");
}

TEST(ProbeKernelImageTest, FileSizeLargerThanMemSize) {
  TestElf elf = TestElf::Simple(0x100000, "abcdef", 0);
  elf.segments[0].phdr.p_memsz = 2;
  ExpectRejected(elf.Serialize(), "file size 0x6 exceeds memory size 0x2");
}

TEST(ProbeKernelImageTest, OffsetOverflow) {
  TestElf elf = TestElf::Simple();
  elf.segments[0].phdr.p_offset = ~uint64_t{0} - 1;
  ExpectRejected(elf.Serialize(), "beyond the end of the file");
}

TEST(ProbeKernelImageTest, HugeSegment) {
  TestElf elf = TestElf::Simple();
  elf.segments[0].phdr.p_memsz = 64ull << 30;
  ExpectRejected(elf.Serialize(), "larger than the 0x40000000 limit");
}

TEST(ProbeKernelImageTest, HugeTotal) {
  TestElf elf = TestElf::Simple(0x100000, "\xf4", 0);
  elf.segments[0].phdr.p_memsz = 768ull << 20;
  elf.AddSegment(0x40000000, "x", 768ull << 20, PF_R);
  ExpectRejected(elf.Serialize(), "total more than");
}

TEST(ProbeKernelImageTest, AddressOverflow) {
  TestElf elf = TestElf::Simple();
  elf.segments[0].phdr.p_paddr = ~uint64_t{0} - 0x10;
  elf.ehdr.e_entry = ~uint64_t{0} - 0x10;
  ExpectRejected(elf.Serialize(), "outside any possible guest RAM");
}

TEST(ProbeKernelImageTest, SegmentInMmioHole) {
  ExpectRejected(TestElf::Simple(0xC0001000).Serialize(),
                 "overlaps the MMIO hole");
  ExpectRejected(
      TestElf::Simple(0xBFFFFFF0, std::string(0x20, '\x90')).Serialize(),
      "overlaps the MMIO hole");
}

TEST(ProbeKernelImageTest, SegmentOverBootStructures) {
  ExpectRejected(TestElf::Simple(0x8000).Serialize(),
                 "overlaps the boot page tables");
  ExpectRejected(
      TestElf::Simple(0x1F000, std::string(0x1800, '\x90')).Serialize(),
      "overlaps the command line");
}

TEST(ProbeKernelImageTest, OverlappingSegments) {
  TestElf elf = TestElf::Simple(0x100000, "\xf4", 0x1000);
  elf.AddSegment(0x100800, "data", 0x10, PF_R | PF_W);
  ExpectRejected(elf.Serialize(), "overlap");
}

TEST(ProbeKernelImageTest, EntryOutsideAnySegment) {
  TestElf elf = TestElf::Simple();
  elf.ehdr.e_entry = 0x500000;
  ExpectRejected(elf.Serialize(),
                 "entry point 0x500000 is not inside an executable");
}

TEST(ProbeKernelImageTest, EntryInNonExecutableSegment) {
  TestElf elf = TestElf::Simple();
  elf.AddSegment(0x200000, "data", 0x10, PF_R | PF_W);
  elf.ehdr.e_entry = 0x200000;
  ExpectRejected(elf.Serialize(), "not inside an executable");
}

TEST(ProbeKernelImageTest, VirtualEntryIsTranslated) {
  // Like vmlinux: linked high (p_vaddr), loaded low (p_paddr).
  TestElf elf = TestElf::Simple(0x1000000, "\x90\xf4", 0x10);
  elf.segments[0].phdr.p_vaddr = 0xffffffff81000000;
  elf.ehdr.e_entry = 0xffffffff81000001;
  const std::string path = WriteTempFile(elf.Serialize());
  absl::StatusOr<KernelImageInfo> info = ProbeKernelImage(path);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->entry, 0x1000001u);
}

TEST(ProbeKernelImageTest, ZeroSizedSegmentsAreIgnored) {
  TestElf elf = TestElf::Simple();
  elf.AddSegment(0x100000, "", 0, PF_R);  // same address, but empty
  const std::string path = WriteTempFile(elf.Serialize());
  absl::StatusOr<KernelImageInfo> info = ProbeKernelImage(path);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->segments.size(), 1u);
}

TEST(CheckKernelFitsMemoryTest, SegmentBeyondRam) {
  TestElf elf = TestElf::Simple(0x100000, "\xf4", 0);
  elf.AddSegment(0x10000000, "far", 0x1000, PF_R);  // 256 MiB
  const std::string path = WriteTempFile(elf.Serialize());
  absl::StatusOr<KernelImageInfo> info = ProbeKernelImage(path);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(CheckKernelFitsMemory(path, *info, 512ull << 20).ok());
  absl::Status s = CheckKernelFitsMemory(path, *info, 64ull << 20);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("does not fit in the guest's RAM (64 MiB)"));
}

TEST(CheckKernelFitsMemoryTest, HighRam) {
  TestElf elf = TestElf::Simple(0x100001000ull, "\xf4", 0);  // just above 4 GiB
  const std::string path = WriteTempFile(elf.Serialize());
  absl::StatusOr<KernelImageInfo> info = ProbeKernelImage(path);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(CheckKernelFitsMemory(path, *info, 3ull << 30).ok());
  EXPECT_TRUE(
      CheckKernelFitsMemory(path, *info, (3ull << 30) + (2 << 20)).ok());
}

}  // namespace
}  // namespace kernel_probe
