#ifndef HVSTACK_KERNEL_PROBE_TEST_ELF_H_
#define HVSTACK_KERNEL_PROBE_TEST_ELF_H_

#include <elf.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kernel_probe::testing {

// Builds small ELF64 images for loader tests, valid by default, easy to
// corrupt.
struct TestElf {
  struct Segment {
    Elf64_Phdr phdr;
    std::string bytes;  // placed at phdr.p_offset
  };
  Elf64_Ehdr ehdr;
  std::vector<Segment> segments;

  // A valid x86-64 ET_EXEC with one executable segment of `code` at `gpa`,
  // entry at `gpa`.
  static TestElf Simple(uint64_t gpa = 0x100000,
                        std::string code = "\xf4\xeb\xfd",
                        uint64_t bss = 0x100);
  // Appends a PT_LOAD segment; its file offset follows the previous content.
  void AddSegment(uint64_t gpa, std::string bytes, uint64_t mem_size,
                  uint32_t flags);
  // Appends a PT_NOTE segment holding `notes` (see Note()).
  void AddNoteSegment(std::string notes);
  // One ELF note: namesz, descsz, type, name (NUL added), desc, each padded
  // to 4 bytes.
  static std::string Note(const std::string& name, uint32_t type,
                          const std::string& desc);
  // Xen's PHYS32_ENTRY note (type 18) with a `width`-byte (4 or 8) address.
  static std::string PvhNote(uint64_t entry, int width = 8);
  // The file contents (ELF header, program headers, segment bytes).
  std::string Serialize() const;
};

// Writes `contents` to a fresh file in a temporary directory and returns its
// path.
std::string WriteTempFile(const std::string& contents,
                          const std::string& name = "kernel.elf");

}  // namespace kernel_probe::testing

#endif  // HVSTACK_KERNEL_PROBE_TEST_ELF_H_
