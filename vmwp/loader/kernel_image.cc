#include "vmwp/loader/kernel_image.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <span>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/scoped_fd.h"
#include "vmwp/loader/guest_layout.h"

namespace vmwp {
namespace {

absl::Status Invalid(const std::string& path, absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("kernel ", path, ": ", problem));
}

// Reads exactly out.size() bytes at `offset`; the caller has checked the range
// against the file size, so a short read means the file changed under us.
absl::Status ReadAt(const std::string& path, int fd, uint64_t offset,
                    std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + done, out.size() - done,
                              static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Invalid(path, absl::StrCat("read failed: ", strerror(errno)));
    }
    if (n == 0) return Invalid(path, "file shrank while being read");
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// True if [a_start, a_end) and [b_start, b_end) intersect.
bool Intersects(uint64_t a_start, uint64_t a_end, uint64_t b_start,
                uint64_t b_end) {
  return a_start < b_end && b_start < a_end;
}

absl::Status CheckIdent(const std::string& path, const Elf64_Ehdr& eh) {
  if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
    return Invalid(path, "not an ELF file (bad magic)");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) {
    return Invalid(path, absl::StrFormat(
                             "ELF class %d is not ELFCLASS64 (a 32-bit image?)",
                             eh.e_ident[EI_CLASS]));
  }
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) {
    return Invalid(path,
                   absl::StrFormat("ELF data encoding %d is not little-endian",
                                   eh.e_ident[EI_DATA]));
  }
  if (eh.e_ident[EI_VERSION] != EV_CURRENT || eh.e_version != EV_CURRENT) {
    return Invalid(path, absl::StrFormat("ELF version %d is not %d",
                                         eh.e_version, EV_CURRENT));
  }
  if (eh.e_machine != EM_X86_64) {
    return Invalid(
        path, absl::StrFormat("ELF machine %d is not x86-64", eh.e_machine));
  }
  if (eh.e_type != ET_EXEC) {
    return Invalid(
        path,
        absl::StrFormat(
            "ELF type %d is not ET_EXEC (a static, non-relocatable executable)",
            eh.e_type));
  }
  if (eh.e_ehsize < sizeof(Elf64_Ehdr)) {
    return Invalid(
        path, absl::StrFormat("ELF header size %d is too small", eh.e_ehsize));
  }
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) {
    return Invalid(path,
                   absl::StrFormat("program header entry size %d is not %d",
                                   eh.e_phentsize, sizeof(Elf64_Phdr)));
  }
  if (eh.e_phnum == 0) return Invalid(path, "no program headers");
  if (eh.e_phnum > kMaxProgramHeaders) {
    return Invalid(path, absl::StrFormat("%d program headers (the limit is %d)",
                                         eh.e_phnum, kMaxProgramHeaders));
  }
  return absl::OkStatus();
}

absl::StatusOr<KernelSegment> CheckSegment(const std::string& path,
                                           const Elf64_Phdr& ph,
                                           uint64_t file_size, int index) {
  const std::string which =
      absl::StrFormat("segment %d (paddr 0x%x)", index, ph.p_paddr);
  if (ph.p_filesz > ph.p_memsz) {
    return Invalid(
        path, absl::StrFormat("%s: file size 0x%x exceeds memory size 0x%x",
                              which, ph.p_filesz, ph.p_memsz));
  }
  if (ph.p_memsz > kMaxKernelLoadBytes) {
    return Invalid(
        path,
        absl::StrFormat("%s: memory size 0x%x is larger than the 0x%x limit",
                        which, ph.p_memsz, kMaxKernelLoadBytes));
  }
  if (ph.p_offset > file_size || ph.p_filesz > file_size - ph.p_offset) {
    return Invalid(
        path,
        absl::StrFormat("%s: file range [0x%x, +0x%x) is beyond the end of the "
                        "file (0x%x bytes; truncated?)",
                        which, ph.p_offset, ph.p_filesz, file_size));
  }
  const uint64_t start = ph.p_paddr;
  if (start > kMaxGuestPhysicalEnd ||
      ph.p_memsz > kMaxGuestPhysicalEnd - start) {
    return Invalid(
        path,
        absl::StrFormat("%s: [0x%x, +0x%x) is outside any possible guest RAM",
                        which, start, ph.p_memsz));
  }
  const uint64_t end = start + ph.p_memsz;
  if (Intersects(start, end, kLowRamEnd, kHighRamStart)) {
    return Invalid(
        path,
        absl::StrFormat("%s: [0x%x, 0x%x) overlaps the MMIO hole [0x%x, 0x%x)",
                        which, start, end, kLowRamEnd, kHighRamStart));
  }
  for (const GpaRange& r : kLoaderReservedRanges) {
    if (Intersects(start, end, r.start, r.end)) {
      return Invalid(
          path,
          absl::StrFormat("%s: [0x%x, 0x%x) overlaps the %s at [0x%x, 0x%x); "
                          "link the kernel at or above 1 MiB",
                          which, start, end, r.what, r.start, r.end));
    }
  }
  KernelSegment seg;
  seg.gpa = start;
  seg.file_offset = ph.p_offset;
  seg.file_size = ph.p_filesz;
  seg.mem_size = ph.p_memsz;
  seg.executable = (ph.p_flags & PF_X) != 0;
  return seg;
}

}  // namespace

absl::StatusOr<KernelImageInfo> ProbeKernelImage(const std::string& path) {
  base::ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid())
    return Invalid(path, absl::StrCat("cannot open: ", strerror(errno)));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0)
    return Invalid(path, absl::StrCat("stat: ", strerror(errno)));
  if (!S_ISREG(st.st_mode)) return Invalid(path, "not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);

  Elf64_Ehdr eh;
  if (file_size < sizeof(eh)) {
    // Still say "not an ELF file" when even the magic is missing.
    if (file_size < SELFMAG)
      return Invalid(path, "not an ELF file (bad magic)");
    unsigned char magic[SELFMAG];
    if (absl::Status s = ReadAt(path, fd.get(), 0, magic); !s.ok()) return s;
    if (memcmp(magic, ELFMAG, SELFMAG) != 0)
      return Invalid(path, "not an ELF file (bad magic)");
    return Invalid(path, absl::StrFormat(
                             "truncated: %d bytes, shorter than the ELF header",
                             file_size));
  }
  if (absl::Status s = ReadAt(path, fd.get(), 0,
                              {reinterpret_cast<uint8_t*>(&eh), sizeof(eh)});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckIdent(path, eh); !s.ok()) return s;

  const uint64_t table_bytes = uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
  if (eh.e_phoff > file_size || table_bytes > file_size - eh.e_phoff) {
    return Invalid(
        path,
        absl::StrFormat("program header table [0x%x, +0x%x) is beyond the end "
                        "of the file (0x%x bytes; truncated?)",
                        eh.e_phoff, table_bytes, file_size));
  }
  std::vector<Elf64_Phdr> phdrs(eh.e_phnum);
  if (absl::Status s =
          ReadAt(path, fd.get(), eh.e_phoff,
                 {reinterpret_cast<uint8_t*>(phdrs.data()), table_bytes});
      !s.ok()) {
    return s;
  }

  KernelImageInfo info;
  info.file_size = file_size;
  std::vector<uint64_t>
      vaddrs;  // parallel to info.segments, for entry translation
  uint64_t total = 0;
  for (int i = 0; i < eh.e_phnum; ++i) {
    const Elf64_Phdr& ph = phdrs[i];
    if (ph.p_type != PT_LOAD) continue;
    absl::StatusOr<KernelSegment> seg = CheckSegment(path, ph, file_size, i);
    if (!seg.ok()) return seg.status();
    if (seg->mem_size == 0) continue;
    total +=
        seg->mem_size;  // each <= 1 GiB and at most 64 of them: no overflow
    if (total > kMaxKernelLoadBytes) {
      return Invalid(
          path, absl::StrFormat("loadable segments total more than 0x%x bytes",
                                kMaxKernelLoadBytes));
    }
    info.segments.push_back(*seg);
    vaddrs.push_back(ph.p_vaddr);
  }
  if (info.segments.empty())
    return Invalid(path, "no loadable (PT_LOAD) segments");

  // Entry point: physical first (Linux's vmlinux has e_entry =
  // phys_startup_64), else a virtual address inside a segment.
  std::optional<uint64_t> entry;
  for (const KernelSegment& s : info.segments) {
    if (s.executable && eh.e_entry >= s.gpa &&
        eh.e_entry - s.gpa < s.mem_size) {
      entry = eh.e_entry;
      break;
    }
  }
  for (size_t i = 0; !entry && i < info.segments.size(); ++i) {
    const KernelSegment& s = info.segments[i];
    if (s.executable && eh.e_entry >= vaddrs[i] &&
        eh.e_entry - vaddrs[i] < s.mem_size) {
      entry = s.gpa + (eh.e_entry - vaddrs[i]);
    }
  }
  if (!entry) {
    return Invalid(
        path,
        absl::StrFormat("entry point 0x%x is not inside an executable loadable "
                        "segment",
                        eh.e_entry));
  }
  info.entry = *entry;

  std::sort(info.segments.begin(), info.segments.end(),
            [](const KernelSegment& a, const KernelSegment& b) {
              return a.gpa < b.gpa;
            });
  for (size_t i = 1; i < info.segments.size(); ++i) {
    const KernelSegment& a = info.segments[i - 1];
    const KernelSegment& b = info.segments[i];
    if (a.gpa + a.mem_size > b.gpa) {
      return Invalid(
          path, absl::StrFormat(
                    "segments [0x%x, 0x%x) and [0x%x, 0x%x) overlap", a.gpa,
                    a.gpa + a.mem_size, b.gpa, b.gpa + b.mem_size));
    }
  }
  return info;
}

absl::Status CheckKernelFitsMemory(const std::string& path,
                                   const KernelImageInfo& image,
                                   uint64_t memory_bytes) {
  const std::vector<GpaRange> ram = GuestRamRanges(memory_bytes);
  for (const KernelSegment& s : image.segments) {
    const bool fits =
        std::any_of(ram.begin(), ram.end(), [&](const GpaRange& r) {
          return s.gpa >= r.start && s.gpa <= r.end &&
                 s.mem_size <= r.end - s.gpa;
        });
    if (!fits) {
      return Invalid(path,
                     absl::StrFormat(
                         "segment [0x%x, 0x%x) does not fit in the guest's RAM "
                         "(%d MiB); give the VM more memory",
                         s.gpa, s.gpa + s.mem_size, memory_bytes >> 20));
    }
  }
  return absl::OkStatus();
}

}  // namespace vmwp
