#include "vmwp/loader/kernel_loader.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/scoped_fd.h"
#include "kernel_probe/guest_layout.h"

namespace vmwp {

using kernel_probe::BzImagePlacement;
using kernel_probe::CheckKernelFitsMemory;
using kernel_probe::KernelImageInfo;
using kernel_probe::KernelSegment;
using kernel_probe::PlaceBzImage;
using kernel_probe::ProbeKernelImage;

namespace {

absl::Status Invalid(const std::string& path, absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("kernel ", path, ": ", problem));
}

absl::Status CopySegment(const std::string& path, int fd,
                         const KernelSegment& seg, vid::GuestMemory& memory) {
  if (seg.file_size > 0) {
    absl::StatusOr<std::span<uint8_t>> dest =
        memory.GetSpan(seg.gpa, seg.file_size);
    if (!dest.ok()) return Invalid(path, dest.status().message());
    size_t done = 0;
    while (done < dest->size()) {
      const ssize_t n = ::pread(fd, dest->data() + done, dest->size() - done,
                                static_cast<off_t>(seg.file_offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Invalid(path, absl::StrCat("read failed: ", strerror(errno)));
      }
      // The probe checked the range against the file's size; it shrank since.
      if (n == 0) return Invalid(path, "file shrank while being loaded");
      done += static_cast<size_t>(n);
    }
  }
  if (seg.mem_size > seg.file_size) {
    absl::Status s = memory.Fill(seg.gpa + seg.file_size,
                                 seg.mem_size - seg.file_size, /*byte=*/0);
    if (!s.ok()) return Invalid(path, s.message());
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LoadedKernel> LoadKernel(const std::string& path,
                                        vid::GuestMemory& memory) {
  absl::StatusOr<KernelImageInfo> image = ProbeKernelImage(path);
  if (!image.ok()) return image.status();
  if (absl::Status s = CheckKernelFitsMemory(path, *image, memory.size());
      !s.ok())
    return s;
  LoadedKernel loaded;
  if (image->bzimage) {
    absl::StatusOr<BzImagePlacement> placement =
        PlaceBzImage(*image->bzimage, memory.size());
    if (!placement.ok()) return Invalid(path, placement.status().message());
    // The protected-mode part: everything after the setup code.
    KernelSegment seg;
    seg.gpa = placement->load_address;
    seg.file_offset = image->bzimage->setup_bytes;
    seg.file_size = image->bzimage->payload_size;
    seg.mem_size = seg.file_size;
    seg.executable = true;
    image->segments = {seg};
    loaded.entry = placement->entry64;
    loaded.start = placement->start;
    loaded.end = placement->end;
    loaded.placement = *placement;
  } else {
    loaded.entry = image->entry;
    loaded.start = image->segments.front().gpa;
    loaded.end = image->segments.back().gpa + image->segments.back().mem_size;
  }
  for (const KernelSegment& seg : image->segments) {
    // Authoritative check against the memory we really have (the layout
    // constants mirror it).
    if (!memory.Contains(seg.gpa, seg.mem_size)) {
      return Invalid(
          path, absl::StrFormat("segment [0x%x, +0x%x) is not inside guest RAM",
                                seg.gpa, seg.mem_size));
    }
  }
  base::ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid())
    return Invalid(path, absl::StrCat("cannot open: ", strerror(errno)));
  for (const KernelSegment& seg : image->segments) {
    if (absl::Status s = CopySegment(path, fd.get(), seg, memory); !s.ok())
      return s;
  }
  loaded.image = *std::move(image);
  return loaded;
}

}  // namespace vmwp
