#include "vmwp/boot/boot_image.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <span>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/scoped_fd.h"
#include "kernel_probe/guest_layout.h"
#include "vmwp/acpi/acpi_tables.h"
#include "vmwp/loader/kernel_loader.h"
#include "vmwp/loader/start_info.h"

namespace vmwp {

using kernel_probe::GpaRange;
using kernel_probe::kCmdlineAddress;
using kernel_probe::kCmdlineAreaSize;
using kernel_probe::KernelFormat;
using kernel_probe::KernelFormatName;
using kernel_probe::kLegacyHoleEnd;
using kernel_probe::kMaxCmdlineBytes;
using kernel_probe::kZeroPageAddress;
using kernel_probe::ProbeInitrd;

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kOneMiB = 0x100000;

uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

absl::Status InitrdError(const std::string& path, absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("initrd ", path, ": ", problem));
}

absl::Status WriteFailed(absl::string_view what, const absl::Status& s) {
  return absl::FailedPreconditionError(
      absl::StrCat("cannot write the ", what, ": ", s.message()));
}

absl::Status CheckAndWriteCmdline(const BootSpec& spec,
                                  const LoadedKernel& kernel,
                                  vid::GuestMemory& memory) {
  const std::string& cmdline = spec.cmdline;
  if (cmdline.size() > kMaxCmdlineBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("command line is %d bytes; the limit is %d",
                        cmdline.size(), kMaxCmdlineBytes));
  }
  if (cmdline.find('\0') != std::string::npos)
    return absl::InvalidArgumentError("command line contains a NUL byte");
  if (kernel.image.bzimage &&
      cmdline.size() > kernel.image.bzimage->cmdline_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "command line is %d bytes; kernel %s accepts at most %d (cmdline_size "
        "in its setup header)",
        cmdline.size(), spec.kernel_path, kernel.image.bzimage->cmdline_size));
  }
  std::vector<uint8_t> area(kCmdlineAreaSize, 0);
  std::copy(cmdline.begin(), cmdline.end(), area.begin());
  if (absl::Status s = memory.Write(kCmdlineAddress, area); !s.ok())
    return WriteFailed("command line", s);
  return absl::OkStatus();
}

absl::Status ReadInitrd(const std::string& path, uint64_t gpa, uint64_t size,
                        vid::GuestMemory& memory) {
  absl::StatusOr<std::span<uint8_t>> dest = memory.GetSpan(gpa, size);
  if (!dest.ok()) return InitrdError(path, dest.status().message());
  base::ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid())
    return InitrdError(path, absl::StrCat("cannot open: ", strerror(errno)));
  size_t done = 0;
  while (done < dest->size()) {
    const ssize_t n = ::pread(fd.get(), dest->data() + done,
                              dest->size() - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return InitrdError(path, absl::StrCat("read failed: ", strerror(errno)));
    }
    if (n == 0) return InitrdError(path, "file shrank while being loaded");
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<uint64_t> PlaceInitrd(const std::string& path, uint64_t size,
                                     uint64_t kernel_end, uint64_t limit) {
  const uint64_t lowest = std::max(AlignUp(kernel_end, kPage), kOneMiB);
  if (size > limit || ((limit - size) & ~(kPage - 1)) < lowest) {
    return InitrdError(
        path,
        absl::StrFormat(
            "0x%x bytes do not fit between the kernel's end (0x%x) and the "
            "highest address an initrd may use here (0x%x); give the VM more "
            "memory or use a smaller initrd",
            size, lowest, limit));
  }
  return (limit - size) & ~(kPage - 1);
}

absl::StatusOr<BootImage> LoadBootImage(const BootSpec& spec,
                                        vid::GuestMemory& memory) {
  absl::StatusOr<LoadedKernel> kernel = LoadKernel(spec.kernel_path, memory);
  if (!kernel.ok()) return kernel.status();
  BootImage boot;
  boot.format = kernel->image.format;
  boot.kernel_start = kernel->start;
  boot.kernel_end = kernel->end;

  if (absl::Status s = CheckAndWriteCmdline(spec, *kernel, memory); !s.ok())
    return s;
  boot.cmdline_gpa = kCmdlineAddress;

  // RAM ranges, and the top of RAM below the MMIO hole.
  std::vector<GpaRange> ram;
  for (const vid::GuestMemory::Region& r : memory.regions())
    ram.push_back({r.gpa, r.gpa + r.size, "RAM"});
  const uint64_t low_top = ram.empty() ? 0 : ram.front().end;

  if (!spec.initrd_path.empty()) {
    absl::StatusOr<uint64_t> size =
        ProbeInitrd(spec.initrd_path, memory.size());
    if (!size.ok()) return size.status();
    const uint64_t addr_max = kernel->image.bzimage
                                  ? kernel->image.bzimage->initrd_addr_max
                                  : kDefaultInitrdAddrMax;
    const uint64_t limit = std::min(low_top, addr_max + 1);
    absl::StatusOr<uint64_t> gpa =
        PlaceInitrd(spec.initrd_path, *size, kernel->end, limit);
    if (!gpa.ok()) return gpa.status();
    if (absl::Status s = ReadInitrd(spec.initrd_path, *gpa, *size, memory);
        !s.ok()) {
      return s;
    }
    boot.initrd_gpa = *gpa;
    boot.initrd_size = *size;
  }

  absl::StatusOr<acpi::AcpiTables> tables =
      acpi::BuildAcpiTables(spec.acpi, acpi::kBiosAreaStart);
  if (!tables.ok()) {
    return absl::Status(
        tables.status().code(),
        absl::StrCat("ACPI tables: ", tables.status().message()));
  }
  boot.acpi_start = tables->base_gpa;
  boot.acpi_end = AlignUp(tables->base_gpa + tables->bytes.size(), kPage);
  boot.rsdp_gpa = tables->rsdp_gpa();
  if (boot.acpi_end > kLegacyHoleEnd || boot.rsdp_gpa % 16 != 0) {
    return absl::InternalError(absl::StrFormat(
        "ACPI tables [0x%x, 0x%x) with the RSDP at 0x%x do not fit the BIOS "
        "area",
        boot.acpi_start, boot.acpi_end, boot.rsdp_gpa));
  }
  if (absl::Status s = memory.Write(tables->base_gpa, tables->bytes); !s.ok())
    return WriteFailed("ACPI tables", s);

  boot.e820 =
      BuildE820Map(ram, GpaRange{boot.acpi_start, boot.acpi_end, "ACPI data"});

  if (kernel->image.format == KernelFormat::kElfPvh && spec.use_pvh_entry) {
    pvh::StartInfoParams params;
    params.cmdline_gpa = boot.cmdline_gpa;
    params.rsdp_gpa = boot.rsdp_gpa;
    if (boot.initrd_size > 0)
      params.initrd = pvh::Module{boot.initrd_gpa, boot.initrd_size};
    params.memmap = boot.e820;
    absl::StatusOr<pvh::StartInfoPage> page =
        pvh::BuildStartInfoPage(params, pvh::kStartInfoAddress);
    if (!page.ok()) return page.status();
    if (absl::Status s = memory.Write(pvh::kStartInfoAddress, *page); !s.ok())
      return WriteFailed("PVH start_info", s);
    boot.mode = BootEntryMode::kProtectedMode32;
    boot.entry = *kernel->image.pvh_entry;
    boot.boot_params_gpa = pvh::kStartInfoAddress;
    return boot;
  }

  ZeroPageParams params;
  params.cmdline_gpa = boot.cmdline_gpa;
  params.cmdline_size = static_cast<uint32_t>(spec.cmdline.size());
  params.e820 = boot.e820;
  if (kernel->image.bzimage)
    params.setup_header = kernel->image.bzimage->setup_header;
  params.ramdisk_gpa = boot.initrd_gpa;
  params.ramdisk_size = boot.initrd_size;
  params.acpi_rsdp_gpa = boot.rsdp_gpa;
  absl::StatusOr<ZeroPage> page = BuildZeroPage(params);
  if (!page.ok()) return page.status();
  if (absl::Status s = memory.Write(kZeroPageAddress, *page); !s.ok())
    return WriteFailed("zero page", s);
  boot.mode = BootEntryMode::kLongMode64;
  boot.entry = kernel->entry;
  boot.boot_params_gpa = kZeroPageAddress;
  return boot;
}

std::string DescribeBootImage(const BootImage& image) {
  const bool pvh = image.mode == BootEntryMode::kProtectedMode32;
  std::string s =
      absl::StrFormat("%s kernel: %s entry 0x%x, %s 0x%x, kernel [0x%x, 0x%x)",
                      std::string(KernelFormatName(image.format)),
                      pvh ? "32-bit PVH" : "64-bit", image.entry,
                      pvh ? "start_info" : "zero page", image.boot_params_gpa,
                      image.kernel_start, image.kernel_end);
  if (image.initrd_size > 0) {
    absl::StrAppendFormat(&s, ", initrd [0x%x, +0x%x)", image.initrd_gpa,
                          image.initrd_size);
  }
  absl::StrAppendFormat(&s, ", command line 0x%x, ACPI [0x%x, 0x%x) RSDP 0x%x",
                        image.cmdline_gpa, image.acpi_start, image.acpi_end,
                        image.rsdp_gpa);
  return s;
}

}  // namespace vmwp
