#include "kernel_probe/test_elf.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <fstream>

namespace kernel_probe::testing {

namespace {
constexpr uint64_t kFirstSegmentOffset = 0x1000;
}

TestElf TestElf::Simple(uint64_t gpa, std::string code, uint64_t bss) {
  TestElf elf;
  std::memset(&elf.ehdr, 0, sizeof(elf.ehdr));
  std::memcpy(elf.ehdr.e_ident, ELFMAG, SELFMAG);
  elf.ehdr.e_ident[EI_CLASS] = ELFCLASS64;
  elf.ehdr.e_ident[EI_DATA] = ELFDATA2LSB;
  elf.ehdr.e_ident[EI_VERSION] = EV_CURRENT;
  elf.ehdr.e_type = ET_EXEC;
  elf.ehdr.e_machine = EM_X86_64;
  elf.ehdr.e_version = EV_CURRENT;
  elf.ehdr.e_entry = gpa;
  elf.ehdr.e_phoff = sizeof(Elf64_Ehdr);
  elf.ehdr.e_ehsize = sizeof(Elf64_Ehdr);
  elf.ehdr.e_phentsize = sizeof(Elf64_Phdr);
  elf.AddSegment(gpa, std::move(code), 0, PF_R | PF_X);
  elf.segments.back().phdr.p_memsz = elf.segments.back().bytes.size() + bss;
  return elf;
}

void TestElf::AddSegment(uint64_t gpa, std::string bytes, uint64_t mem_size,
                         uint32_t flags) {
  uint64_t offset = kFirstSegmentOffset;
  for (const Segment& s : segments)
    offset = std::max(offset, s.phdr.p_offset + s.bytes.size());
  Segment seg;
  std::memset(&seg.phdr, 0, sizeof(seg.phdr));
  seg.phdr.p_type = PT_LOAD;
  seg.phdr.p_flags = flags;
  seg.phdr.p_offset = offset;
  seg.phdr.p_vaddr = gpa;
  seg.phdr.p_paddr = gpa;
  seg.phdr.p_filesz = bytes.size();
  seg.phdr.p_memsz = std::max<uint64_t>(mem_size, bytes.size());
  seg.phdr.p_align = 0x1000;
  seg.bytes = std::move(bytes);
  segments.push_back(std::move(seg));
  ehdr.e_phnum = static_cast<uint16_t>(segments.size());
}

void TestElf::AddNoteSegment(std::string notes) {
  AddSegment(0, std::move(notes), 0, PF_R);
  Elf64_Phdr& ph = segments.back().phdr;
  ph.p_type = PT_NOTE;
  ph.p_vaddr = ph.p_paddr = 0;
  ph.p_memsz = 0;
  ph.p_align = 4;
}

std::string TestElf::Note(const std::string& name, uint32_t type,
                          const std::string& desc) {
  auto pad = [](std::string s) {
    s.resize((s.size() + 3) & ~size_t{3}, '\0');
    return s;
  };
  const std::string n = name + std::string(1, '\0');
  std::string out(12, '\0');
  const uint32_t namesz = static_cast<uint32_t>(n.size());
  const uint32_t descsz = static_cast<uint32_t>(desc.size());
  std::memcpy(out.data(), &namesz, 4);
  std::memcpy(out.data() + 4, &descsz, 4);
  std::memcpy(out.data() + 8, &type, 4);
  return out + pad(n) + pad(desc);
}

std::string TestElf::PvhNote(uint64_t entry, int width) {
  std::string desc(static_cast<size_t>(width), '\0');
  std::memcpy(desc.data(), &entry, std::min<size_t>(desc.size(), 8));
  return Note("Xen", 18, desc);
}

std::string TestElf::Serialize() const {
  std::string out(kFirstSegmentOffset, '\0');
  std::memcpy(out.data(), &ehdr, sizeof(ehdr));
  for (size_t i = 0; i < segments.size(); ++i) {
    const size_t at = sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr);
    std::memcpy(out.data() + at, &segments[i].phdr, sizeof(Elf64_Phdr));
  }
  for (const Segment& s : segments) {
    // Segments whose offsets were corrupted on purpose may point anywhere: only
    // write the ones that land at or beyond the headers.
    if (s.phdr.p_offset < kFirstSegmentOffset || s.phdr.p_offset > (64u << 20))
      continue;
    if (out.size() < s.phdr.p_offset + s.bytes.size())
      out.resize(s.phdr.p_offset + s.bytes.size());
    std::memcpy(out.data() + s.phdr.p_offset, s.bytes.data(), s.bytes.size());
  }
  return out;
}

std::string WriteTempFile(const std::string& contents,
                          const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(tmp ? tmp : "/tmp") + "/elfXXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

}  // namespace kernel_probe::testing
