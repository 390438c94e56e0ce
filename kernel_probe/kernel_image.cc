#include "kernel_probe/kernel_image.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <optional>
#include <span>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/scoped_fd.h"
#include "kernel_probe/guest_layout.h"

namespace kernel_probe {
namespace {

// Problems are reported without the path by the parsers; the probe prefixes
// "kernel <path>: ".
absl::Status Problem(absl::string_view problem) {
  return absl::InvalidArgumentError(problem);
}

absl::Status Invalid(const std::string& path, absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("kernel ", path, ": ", problem));
}

// Where the probe reads the image from: a file, or bytes in memory (fuzzing).
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t size() const = 0;
  // Reads exactly out.size() bytes at `offset`; the caller has checked the
  // range against size(). Errors are problems without the path.
  virtual absl::Status ReadAt(uint64_t offset,
                              std::span<uint8_t> out) const = 0;
};

class FdSource : public ByteSource {
 public:
  FdSource(int fd, uint64_t size) : fd_(fd), size_(size) {}
  uint64_t size() const override { return size_; }
  absl::Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::pread(fd_, out.data() + done, out.size() - done,
                                static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Problem(absl::StrCat("read failed: ", strerror(errno)));
      }
      if (n == 0) return Problem("file shrank while being read");
      done += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

 private:
  int fd_;
  uint64_t size_;
};

class SpanSource : public ByteSource {
 public:
  explicit SpanSource(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  uint64_t size() const override { return bytes_.size(); }
  absl::Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    if (offset > bytes_.size() || out.size() > bytes_.size() - offset)
      return Problem("read beyond the end of the image");
    std::copy_n(bytes_.begin() + static_cast<ptrdiff_t>(offset), out.size(),
                out.begin());
    return absl::OkStatus();
  }

 private:
  std::span<const uint8_t> bytes_;
};

template <typename T>
T Load(std::span<const uint8_t> bytes, size_t offset) {
  T value{};
  if (offset <= bytes.size() && sizeof(T) <= bytes.size() - offset)
    memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

// True if [a_start, a_end) and [b_start, b_end) intersect.
bool Intersects(uint64_t a_start, uint64_t a_end, uint64_t b_start,
                uint64_t b_end) {
  return a_start < b_end && b_start < a_end;
}

uint64_t AlignUp(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) & ~(alignment - 1);
}

constexpr char kNotAKernel[] =
    "not a kernel image: not an ELF file (bad magic) and no bzImage setup "
    "header (\"HdrS\" at 0x202)";

// ---------------------------------------------------------------- ELF

absl::Status CheckIdent(const Elf64_Ehdr& eh) {
  if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return Problem(kNotAKernel);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) {
    return Problem(
        absl::StrFormat("ELF class %d is not ELFCLASS64 (a 32-bit image?)",
                        eh.e_ident[EI_CLASS]));
  }
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) {
    return Problem(absl::StrFormat("ELF data encoding %d is not little-endian",
                                   eh.e_ident[EI_DATA]));
  }
  if (eh.e_ident[EI_VERSION] != EV_CURRENT || eh.e_version != EV_CURRENT) {
    return Problem(
        absl::StrFormat("ELF version %d is not %d", eh.e_version, EV_CURRENT));
  }
  if (eh.e_machine != EM_X86_64) {
    return Problem(
        absl::StrFormat("ELF machine %d is not x86-64", eh.e_machine));
  }
  if (eh.e_type != ET_EXEC) {
    return Problem(absl::StrFormat(
        "ELF type %d is not ET_EXEC (a static, non-relocatable executable)",
        eh.e_type));
  }
  if (eh.e_ehsize < sizeof(Elf64_Ehdr)) {
    return Problem(
        absl::StrFormat("ELF header size %d is too small", eh.e_ehsize));
  }
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) {
    return Problem(absl::StrFormat("program header entry size %d is not %d",
                                   eh.e_phentsize, sizeof(Elf64_Phdr)));
  }
  if (eh.e_phnum == 0) return Problem("no program headers");
  if (eh.e_phnum > kMaxProgramHeaders) {
    return Problem(absl::StrFormat("%d program headers (the limit is %d)",
                                   eh.e_phnum, kMaxProgramHeaders));
  }
  return absl::OkStatus();
}

absl::StatusOr<KernelSegment> CheckSegment(const Elf64_Phdr& ph,
                                           uint64_t file_size, int index) {
  const std::string which =
      absl::StrFormat("segment %d (paddr 0x%x)", index, ph.p_paddr);
  if (ph.p_filesz > ph.p_memsz) {
    return Problem(
        absl::StrFormat("%s: file size 0x%x exceeds memory size 0x%x", which,
                        ph.p_filesz, ph.p_memsz));
  }
  if (ph.p_memsz > kMaxKernelLoadBytes) {
    return Problem(
        absl::StrFormat("%s: memory size 0x%x is larger than the 0x%x limit",
                        which, ph.p_memsz, kMaxKernelLoadBytes));
  }
  if (ph.p_offset > file_size || ph.p_filesz > file_size - ph.p_offset) {
    return Problem(absl::StrFormat(
        "%s: file range [0x%x, +0x%x) is beyond the end of the file (0x%x "
        "bytes; truncated?)",
        which, ph.p_offset, ph.p_filesz, file_size));
  }
  const uint64_t start = ph.p_paddr;
  if (start > kMaxGuestPhysicalEnd ||
      ph.p_memsz > kMaxGuestPhysicalEnd - start) {
    return Problem(
        absl::StrFormat("%s: [0x%x, +0x%x) is outside any possible guest RAM",
                        which, start, ph.p_memsz));
  }
  const uint64_t end = start + ph.p_memsz;
  if (Intersects(start, end, kLowRamEnd, kHighRamStart)) {
    return Problem(
        absl::StrFormat("%s: [0x%x, 0x%x) overlaps the MMIO hole [0x%x, 0x%x)",
                        which, start, end, kLowRamEnd, kHighRamStart));
  }
  for (const GpaRange& r : kLoaderReservedRanges) {
    if (Intersects(start, end, r.start, r.end)) {
      return Problem(absl::StrFormat(
          "%s: [0x%x, 0x%x) overlaps the %s at [0x%x, 0x%x); link the kernel "
          "at or above 1 MiB",
          which, start, end, std::string(r.what), r.start, r.end));
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

bool InsideExecutableSegment(const std::vector<KernelSegment>& segments,
                             uint64_t gpa) {
  return std::any_of(
      segments.begin(), segments.end(), [gpa](const KernelSegment& s) {
        return s.executable && gpa >= s.gpa && gpa - s.gpa < s.mem_size;
      });
}

absl::StatusOr<KernelImageInfo> ProbeElf(const ByteSource& src) {
  const uint64_t file_size = src.size();
  Elf64_Ehdr eh;
  if (file_size < sizeof(eh)) {
    return Problem(absl::StrFormat(
        "truncated: %d bytes, shorter than the ELF header", file_size));
  }
  if (absl::Status s =
          src.ReadAt(0, {reinterpret_cast<uint8_t*>(&eh), sizeof(eh)});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckIdent(eh); !s.ok()) return s;

  const uint64_t table_bytes = uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
  if (eh.e_phoff > file_size || table_bytes > file_size - eh.e_phoff) {
    return Problem(absl::StrFormat(
        "program header table [0x%x, +0x%x) is beyond the end of the file "
        "(0x%x bytes; truncated?)",
        eh.e_phoff, table_bytes, file_size));
  }
  std::vector<Elf64_Phdr> phdrs(eh.e_phnum);
  if (absl::Status s = src.ReadAt(
          eh.e_phoff, {reinterpret_cast<uint8_t*>(phdrs.data()), table_bytes});
      !s.ok()) {
    return s;
  }

  KernelImageInfo info;
  info.file_size = file_size;
  std::vector<uint64_t> vaddrs;  // parallel to info.segments
  uint64_t total = 0;
  std::optional<uint64_t> pvh_entry;
  for (int i = 0; i < eh.e_phnum; ++i) {
    const Elf64_Phdr& ph = phdrs[i];
    if (ph.p_type == PT_NOTE) {
      if (ph.p_offset > file_size || ph.p_filesz > file_size - ph.p_offset) {
        return Problem(absl::StrFormat(
            "PT_NOTE segment %d: file range [0x%x, +0x%x) is beyond the end "
            "of the file (0x%x bytes; truncated?)",
            i, ph.p_offset, ph.p_filesz, file_size));
      }
      if (ph.p_filesz > kMaxNoteSegmentBytes) {
        return Problem(absl::StrFormat(
            "PT_NOTE segment %d is 0x%x bytes; the limit is 0x%x", i,
            ph.p_filesz, kMaxNoteSegmentBytes));
      }
      std::vector<uint8_t> notes(ph.p_filesz);
      if (absl::Status s = src.ReadAt(ph.p_offset, notes); !s.ok()) return s;
      absl::StatusOr<std::optional<uint64_t>> found = FindPvhEntry(notes);
      if (!found.ok()) {
        return Problem(absl::StrFormat("PT_NOTE segment %d: %s", i,
                                       std::string(found.status().message())));
      }
      if (*found && !pvh_entry) pvh_entry = **found;
      continue;
    }
    if (ph.p_type != PT_LOAD) continue;
    absl::StatusOr<KernelSegment> seg = CheckSegment(ph, file_size, i);
    if (!seg.ok()) return seg.status();
    if (seg->mem_size == 0) continue;
    total += seg->mem_size;  // each <= 1 GiB, at most 64 of them: no overflow
    if (total > kMaxKernelLoadBytes) {
      return Problem(absl::StrFormat(
          "loadable segments total more than 0x%x bytes", kMaxKernelLoadBytes));
    }
    info.segments.push_back(*seg);
    vaddrs.push_back(ph.p_vaddr);
  }
  if (info.segments.empty()) return Problem("no loadable (PT_LOAD) segments");

  // Entry point: physical first (Linux's vmlinux has e_entry =
  // phys_startup_64), else a virtual address inside a segment.
  std::optional<uint64_t> entry;
  if (InsideExecutableSegment(info.segments, eh.e_entry)) entry = eh.e_entry;
  for (size_t i = 0; !entry && i < info.segments.size(); ++i) {
    const KernelSegment& s = info.segments[i];
    if (s.executable && eh.e_entry >= vaddrs[i] &&
        eh.e_entry - vaddrs[i] < s.mem_size) {
      entry = s.gpa + (eh.e_entry - vaddrs[i]);
    }
  }
  if (!entry) {
    return Problem(absl::StrFormat(
        "entry point 0x%x is not inside an executable loadable segment",
        eh.e_entry));
  }
  info.entry = *entry;

  if (pvh_entry) {
    if (!InsideExecutableSegment(info.segments, *pvh_entry)) {
      return Problem(absl::StrFormat(
          "PVH entry 0x%x (Xen PHYS32_ENTRY note) is not inside an executable "
          "loadable segment",
          *pvh_entry));
    }
    info.format = KernelFormat::kElfPvh;
    info.pvh_entry = static_cast<uint32_t>(*pvh_entry);
  }

  std::sort(info.segments.begin(), info.segments.end(),
            [](const KernelSegment& a, const KernelSegment& b) {
              return a.gpa < b.gpa;
            });
  for (size_t i = 1; i < info.segments.size(); ++i) {
    const KernelSegment& a = info.segments[i - 1];
    const KernelSegment& b = info.segments[i];
    if (a.gpa + a.mem_size > b.gpa) {
      return Problem(absl::StrFormat(
          "segments [0x%x, 0x%x) and [0x%x, 0x%x) overlap", a.gpa,
          a.gpa + a.mem_size, b.gpa, b.gpa + b.mem_size));
    }
  }
  return info;
}

// ---------------------------------------------------------------- bzImage

namespace bz {
// Offsets in the file, which are also those in struct boot_params.
constexpr size_t kSetupSects = 0x1F1;
constexpr size_t kSyssize = 0x1F4;
constexpr size_t kBootFlag = 0x1FE;
constexpr size_t kJump = 0x200;  // its second byte: header length - 0x202
constexpr size_t kHeader = 0x202;
constexpr size_t kVersion = 0x206;
constexpr size_t kLoadflags = 0x211;
constexpr size_t kInitrdAddrMax = 0x22C;
constexpr size_t kKernelAlignment = 0x230;
constexpr size_t kRelocatable = 0x234;
constexpr size_t kXloadflags = 0x236;
constexpr size_t kCmdlineSize = 0x238;
constexpr size_t kPrefAddress = 0x258;
constexpr size_t kInitSize = 0x260;
// Protocol 2.12's setup header ends after handover_offset.
constexpr size_t kHeaderEnd212 = 0x268;
constexpr uint16_t kBootFlagValue = 0xAA55;
constexpr uint8_t kLoadedHigh = 0x01;
constexpr uint16_t kXlfKernel64 = 0x01;
constexpr uint64_t kEntry64Offset = 0x200;
constexpr uint64_t kOneMiB = 0x100000;
}  // namespace bz

absl::StatusOr<KernelImageInfo> ProbeBzImage(const ByteSource& src) {
  std::vector<uint8_t> head(std::min<uint64_t>(src.size(), kBzImageHeadBytes));
  if (absl::Status s = src.ReadAt(0, head); !s.ok()) return s;
  absl::StatusOr<BzImageHeader> header = ParseBzImageHeader(head, src.size());
  if (!header.ok()) return header.status();
  KernelImageInfo info;
  info.format = KernelFormat::kBzImage;
  info.file_size = src.size();
  info.bzimage = *std::move(header);
  return info;
}

absl::StatusOr<KernelImageInfo> Probe(const ByteSource& src) {
  std::array<uint8_t, 0x206> magic{};
  const size_t have = std::min<uint64_t>(src.size(), magic.size());
  if (absl::Status s = src.ReadAt(0, std::span(magic).first(have)); !s.ok())
    return s;
  if (have >= SELFMAG && memcmp(magic.data(), ELFMAG, SELFMAG) == 0)
    return ProbeElf(src);
  if (have == magic.size() &&
      memcmp(magic.data() + bz::kHeader, "HdrS", 4) == 0)
    return ProbeBzImage(src);
  return Problem(kNotAKernel);
}

absl::StatusOr<base::ScopedFd> OpenRegular(const std::string& path,
                                           uint64_t* size) {
  base::ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid())
    return Problem(absl::StrCat("cannot open: ", strerror(errno)));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0)
    return Problem(absl::StrCat("stat: ", strerror(errno)));
  if (!S_ISREG(st.st_mode)) return Problem("not a regular file");
  *size = static_cast<uint64_t>(st.st_size);
  return fd;
}

}  // namespace

std::string_view KernelFormatName(KernelFormat format) {
  switch (format) {
    case KernelFormat::kElf64:
      return "ELF64";
    case KernelFormat::kElfPvh:
      return "ELF64 with PVH entry";
    case KernelFormat::kBzImage:
      return "bzImage";
  }
  return "unknown";
}

absl::StatusOr<std::optional<uint64_t>> FindPvhEntry(
    std::span<const uint8_t> notes) {
  constexpr uint32_t kXenElfnotePhys32Entry = 18;
  const uint64_t size = notes.size();
  uint64_t off = 0;
  // Each note: namesz, descsz, type (u32 each), then name and desc, each
  // padded to 4 bytes. A tail shorter than a note header is padding.
  while (size - off >= 12) {
    const uint64_t at = off;
    const uint32_t namesz = Load<uint32_t>(notes, off);
    const uint32_t descsz = Load<uint32_t>(notes, off + 4);
    const uint32_t type = Load<uint32_t>(notes, off + 8);
    off += 12;
    if (namesz > size - off) {
      return Problem(absl::StrFormat(
          "note at offset 0x%x: name size %d runs past the end of the segment "
          "(0x%x bytes)",
          at, namesz, size));
    }
    const std::span<const uint8_t> name = notes.subspan(off, namesz);
    off = std::min(size, off + AlignUp(namesz, 4));
    if (descsz > size - off) {
      return Problem(absl::StrFormat(
          "note at offset 0x%x: description size %d runs past the end of the "
          "segment (0x%x bytes)",
          at, descsz, size));
    }
    const std::span<const uint8_t> desc = notes.subspan(off, descsz);
    off = std::min(size, off + AlignUp(descsz, 4));

    std::string_view name_str(reinterpret_cast<const char*>(name.data()),
                              name.size());
    while (!name_str.empty() && name_str.back() == '\0')
      name_str.remove_suffix(1);
    if (name_str != "Xen" || type != kXenElfnotePhys32Entry) continue;
    uint64_t value;
    if (desc.size() == 4) {
      value = Load<uint32_t>(desc, 0);
    } else if (desc.size() == 8) {
      value = Load<uint64_t>(desc, 0);
    } else {
      return Problem(absl::StrFormat(
          "Xen PHYS32_ENTRY note at offset 0x%x has a %d-byte value (expected "
          "4 or 8)",
          at, desc.size()));
    }
    if (value > 0xFFFFFFFFull) {
      return Problem(absl::StrFormat(
          "Xen PHYS32_ENTRY note at offset 0x%x: entry 0x%x is not a 32-bit "
          "address",
          at, value));
    }
    return std::optional<uint64_t>(value);
  }
  return std::optional<uint64_t>();
}

absl::StatusOr<BzImageHeader> ParseBzImageHeader(std::span<const uint8_t> head,
                                                 uint64_t file_size) {
  if (head.size() > file_size) head = head.first(file_size);
  if (head.size() < bz::kVersion + 2) {
    return Problem(absl::StrFormat(
        "truncated: %d bytes, too short for a bzImage setup header",
        head.size()));
  }
  if (memcmp(head.data() + bz::kHeader, "HdrS", 4) != 0)
    return Problem(kNotAKernel);
  const uint16_t boot_flag = Load<uint16_t>(head, bz::kBootFlag);
  if (boot_flag != bz::kBootFlagValue) {
    return Problem(absl::StrFormat(
        "bzImage boot_flag 0x%04x at 0x1FE is not 0xAA55 (corrupt image?)",
        boot_flag));
  }
  BzImageHeader h;
  h.version = Load<uint16_t>(head, bz::kVersion);
  if (h.version < kMinBootProtocol) {
    return Problem(absl::StrFormat(
        "bzImage boot protocol %d.%02d is older than 2.12; hvstack needs a "
        "kernel with the 64-bit entry (Linux 3.8 or later)",
        h.version >> 8, h.version & 0xFF));
  }
  const size_t header_end = bz::kHeader + head[bz::kJump + 1];
  if (header_end < bz::kHeaderEnd212) {
    return Problem(absl::StrFormat(
        "bzImage setup header ends at 0x%x, before the fields of protocol "
        "2.12 (0x%x)",
        header_end, bz::kHeaderEnd212));
  }
  const size_t copy_end = std::min<size_t>(header_end, kBzImageHeadBytes);
  if (head.size() < copy_end) {
    return Problem(absl::StrFormat(
        "truncated: %d bytes, the bzImage setup header ends at 0x%x",
        head.size(), copy_end));
  }
  h.loadflags = head[bz::kLoadflags];
  if ((h.loadflags & bz::kLoadedHigh) == 0) {
    return Problem(
        "bzImage loadflags lack LOADED_HIGH: a zImage (loaded below 1 MiB) is "
        "not supported");
  }
  h.xloadflags = Load<uint16_t>(head, bz::kXloadflags);
  if ((h.xloadflags & bz::kXlfKernel64) == 0) {
    return Problem(absl::StrFormat(
        "bzImage xloadflags 0x%x lack XLF_KERNEL_64: not a 64-bit kernel, or "
        "one without the 64-bit entry hvstack uses",
        h.xloadflags));
  }
  const uint8_t sects = head[bz::kSetupSects];
  h.setup_sects = sects == 0 ? 4 : sects;
  if (h.setup_sects > kMaxSetupSects) {
    return Problem(absl::StrFormat(
        "bzImage setup_sects %d is absurd (the setup code is at most %d "
        "sectors)",
        h.setup_sects, kMaxSetupSects));
  }
  h.setup_bytes = (uint64_t{h.setup_sects} + 1) * 512;
  if (file_size <= h.setup_bytes + bz::kEntry64Offset) {
    return Problem(absl::StrFormat(
        "truncated: %d bytes, but the setup code alone is %d bytes (%d "
        "sectors) and the 64-bit entry is 0x200 bytes after it",
        file_size, h.setup_bytes, h.setup_sects));
  }
  h.payload_size = file_size - h.setup_bytes;
  if (h.payload_size > kMaxKernelLoadBytes) {
    return Problem(absl::StrFormat(
        "bzImage protected-mode part is 0x%x bytes, larger than the 0x%x "
        "limit",
        h.payload_size, kMaxKernelLoadBytes));
  }
  const uint64_t syssize = uint64_t{Load<uint32_t>(head, bz::kSyssize)} * 16;
  if (syssize == 0) return Problem("bzImage syssize is 0");
  if (syssize > h.payload_size) {
    return Problem(absl::StrFormat(
        "truncated: syssize says the protected-mode part is 0x%x bytes, but "
        "only 0x%x follow the setup code",
        syssize, h.payload_size));
  }
  h.relocatable = head[bz::kRelocatable] != 0;
  h.kernel_alignment = Load<uint32_t>(head, bz::kKernelAlignment);
  if (!std::has_single_bit(h.kernel_alignment) ||
      h.kernel_alignment > (1u << 30)) {
    return Problem(absl::StrFormat(
        "bzImage kernel_alignment 0x%x is not a power of two up to 1 GiB",
        h.kernel_alignment));
  }
  h.init_size = Load<uint32_t>(head, bz::kInitSize);
  if (h.init_size == 0 || h.init_size > kMaxKernelLoadBytes) {
    return Problem(
        absl::StrFormat("bzImage init_size 0x%x is absurd (0, or above 0x%x)",
                        h.init_size, kMaxKernelLoadBytes));
  }
  h.pref_address = Load<uint64_t>(head, bz::kPrefAddress);
  if (h.pref_address < bz::kOneMiB || h.pref_address >= kLowRamEnd ||
      h.init_size > kLowRamEnd - h.pref_address) {
    return Problem(absl::StrFormat(
        "bzImage pref_address 0x%x with init_size 0x%x is outside [1 MiB, 3 "
        "GiB)",
        h.pref_address, h.init_size));
  }
  h.initrd_addr_max = Load<uint32_t>(head, bz::kInitrdAddrMax);
  h.cmdline_size = Load<uint32_t>(head, bz::kCmdlineSize);
  h.setup_header.assign(head.begin() + bz::kSetupSects,
                        head.begin() + copy_end);
  return h;
}

absl::StatusOr<BzImagePlacement> PlaceBzImage(const BzImageHeader& header,
                                              uint64_t memory_bytes) {
  const uint64_t low_end = std::min(memory_bytes, kLowRamEnd);
  const uint64_t align = std::max<uint64_t>(header.kernel_alignment, 1);
  std::vector<uint64_t> candidates;
  if (header.relocatable) candidates.push_back(header.pref_address);
  candidates.push_back(bz::kOneMiB);
  BzImagePlacement p;
  for (uint64_t load : candidates) {
    // Every term is below 4 GiB (parse limits), so nothing overflows.
    p.load_address = load;
    p.entry64 = load + bz::kEntry64Offset;
    p.runtime_start = header.relocatable
                          ? std::max(AlignUp(load, align), header.pref_address)
                          : header.pref_address;
    p.start = std::min(load, p.runtime_start);
    p.end = std::max(load + header.payload_size,
                     p.runtime_start + header.init_size);
    if (p.start >= bz::kOneMiB && p.end <= low_end) return p;
  }
  return Problem(absl::StrFormat(
      "bzImage needs [0x%x, 0x%x) (loaded at 0x%x, 0x%x bytes; running at "
      "0x%x, init_size 0x%x) but the guest's RAM below 3 GiB ends at 0x%x "
      "(%d MiB); give the VM more memory",
      p.start, p.end, p.load_address, header.payload_size, p.runtime_start,
      header.init_size, low_end, memory_bytes >> 20));
}

absl::StatusOr<KernelImageInfo> ProbeKernelImage(const std::string& path) {
  uint64_t size = 0;
  absl::StatusOr<base::ScopedFd> fd = OpenRegular(path, &size);
  if (!fd.ok()) return Invalid(path, fd.status().message());
  FdSource src(fd->get(), size);
  absl::StatusOr<KernelImageInfo> info = Probe(src);
  if (!info.ok()) return Invalid(path, info.status().message());
  return info;
}

absl::StatusOr<KernelImageInfo> ProbeKernelImageBytes(
    std::span<const uint8_t> bytes, const std::string& name) {
  SpanSource src(bytes);
  absl::StatusOr<KernelImageInfo> info = Probe(src);
  if (!info.ok()) return Invalid(name, info.status().message());
  return info;
}

absl::Status CheckKernelFitsMemory(const std::string& path,
                                   const KernelImageInfo& image,
                                   uint64_t memory_bytes) {
  if (image.bzimage) {
    absl::StatusOr<BzImagePlacement> p =
        PlaceBzImage(*image.bzimage, memory_bytes);
    if (!p.ok()) return Invalid(path, p.status().message());
    return absl::OkStatus();
  }
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

absl::StatusOr<uint64_t> ProbeInitrd(const std::string& path,
                                     uint64_t memory_bytes) {
  auto invalid = [&](absl::string_view problem) {
    return absl::InvalidArgumentError(
        absl::StrCat("initrd ", path, ": ", problem));
  };
  uint64_t size = 0;
  absl::StatusOr<base::ScopedFd> fd = OpenRegular(path, &size);
  if (!fd.ok()) return invalid(fd.status().message());
  if (size == 0) return invalid("the file is empty");
  if (size > memory_bytes) {
    return invalid(absl::StrFormat(
        "%d bytes (%d MiB) is larger than the guest's RAM (%d MiB)", size,
        (size + (1 << 20) - 1) >> 20, memory_bytes >> 20));
  }
  return size;
}

}  // namespace kernel_probe
