// Writes seed corpora for the loader's fuzz targets:
//   make_seeds OUT_DIR  ->  OUT_DIR/{kernel_probe,bzimage_header,pvh_note}/*
// Valid inputs of every kind the parsers accept (plain ELF, ELF with a PVH
// note, bzImage variants, note segments), so fuzzing starts deep inside them.
#include <elf.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "kernel_probe/test_bzimage.h"
#include "kernel_probe/test_elf.h"

namespace {

using kernel_probe::testing::TestBzImage;
using kernel_probe::testing::TestElf;

void Write(const std::filesystem::path& dir, const std::string& name,
           const std::string& bytes) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::filesystem::path out(argv[1]);
  const auto probe = out / "kernel_probe";
  const auto bz = out / "bzimage_header";
  const auto notes = out / "pvh_note";

  // ELF kernels.
  TestElf simple = TestElf::Simple();
  Write(probe, "elf_simple", simple.Serialize());
  TestElf two = TestElf::Simple(0x100000, "\x90\x90\xf4", 0x1000);
  two.AddSegment(0x200000, "DATA", 0x2000, PF_R | PF_W);
  Write(probe, "elf_two_segments", two.Serialize());
  TestElf vmlinux = TestElf::Simple(0x1000000, std::string(64, '\x90'), 0x100);
  vmlinux.segments[0].phdr.p_vaddr = 0xffffffff81000000ull;
  vmlinux.ehdr.e_entry = 0x1000000;
  const std::string linux_notes =
      TestElf::Note("Xen", 6, "linux") + TestElf::Note("Xen", 7, "2.6") +
      TestElf::PvhNote(0x1000010, 8) +
      TestElf::Note("GNU", 3, "0123456789abcdef0123");
  vmlinux.AddNoteSegment(linux_notes);
  Write(probe, "elf_pvh", vmlinux.Serialize());

  // bzImages: full (small) files for the probe, and for the header parser.
  TestBzImage base;
  base.payload_size = 0x400;
  Write(probe, "bzimage", base.Serialize());
  Write(bz, "bzimage", base.Serialize());
  TestBzImage sects0 = base;
  sects0.setup_sects = 0;
  Write(bz, "bzimage_setup_sects_0", sects0.Serialize());
  TestBzImage fixed = base;
  fixed.relocatable = 0;
  Write(bz, "bzimage_not_relocatable", fixed.Serialize());
  TestBzImage longhdr = base;
  longhdr.header_len = 0xFF;
  Write(bz, "bzimage_long_header", longhdr.Serialize());
  Write(bz, "bzimage_head_only", base.Serialize().substr(0, 0x290));

  // Note segments.
  Write(notes, "linux_like", linux_notes);
  Write(notes, "pvh4", TestElf::PvhNote(0x100040, 4));
  Write(notes, "pvh8", TestElf::PvhNote(0x1000850, 8));
  Write(notes, "other_only", TestElf::Note("GNU", 3, "build-id-bytes"));
  std::printf("seeds written to %s\n", out.c_str());
  return 0;
}
