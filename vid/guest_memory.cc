#include "vid/guest_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_format.h"

namespace vid {
namespace {

constexpr uint64_t k2MiB = 2ull << 20;
constexpr uint64_t kMaxSize = 1ull << 40;

}  // namespace

absl::StatusOr<std::unique_ptr<GuestMemory>> GuestMemory::Create(
    uint64_t size_bytes) {
  if (size_bytes == 0 || size_bytes % k2MiB != 0 || size_bytes > kMaxSize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("guest memory size %d bytes: must be a non-zero "
                        "multiple of 2 MiB, at most 1 TiB",
                        size_bytes));
  }
  // MAP_NORESERVE: the host commits pages as the guest touches them, like any
  // VMM.
  void* p = ::mmap(nullptr, size_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ErrnoToStatus(
        errno,
        absl::StrFormat("mmap of %d MiB of guest memory", size_bytes >> 20));
  }
  // Transparent huge pages cut TLB misses for the guest; failure only costs
  // speed.
  (void)::madvise(p, size_bytes, MADV_HUGEPAGE);
  return std::unique_ptr<GuestMemory>(
      new GuestMemory(static_cast<uint8_t*>(p), size_bytes));
}

GuestMemory::GuestMemory(uint8_t* base, uint64_t size)
    : base_(base), size_(size) {
  uint64_t low = std::min(size, kLowRamEnd);
  regions_.push_back({0, low, base});
  if (size > low) regions_.push_back({kHighRamStart, size - low, base + low});
}

GuestMemory::~GuestMemory() {
  ::munmap(base_, size_);
  if (source_fd_ >= 0) ::close(source_fd_);
}

absl::StatusOr<std::unique_ptr<GuestMemory>> GuestMemory::CreateFromFile(
    uint64_t size_bytes, int fd, uint64_t offset, LoadMode mode) {
  if (mode == LoadMode::kEager) {
    absl::StatusOr<std::unique_ptr<GuestMemory>> memory = Create(size_bytes);
    if (!memory.ok()) return memory;
    // Only the file's data extents: holes are zero already.
    const off_t end = static_cast<off_t>(offset + size_bytes);
    off_t data = static_cast<off_t>(offset);
    while (data < end) {
      data = ::lseek(fd, data, SEEK_DATA);
      if (data < 0) {
        if (errno == ENXIO) break;  // no data after this point
        return absl::ErrnoToStatus(errno, "lseek(SEEK_DATA) in a memory file");
      }
      if (data >= end) break;
      off_t hole = ::lseek(fd, data, SEEK_HOLE);
      if (hole < 0) {
        return absl::ErrnoToStatus(errno, "lseek(SEEK_HOLE) in a memory file");
      }
      hole = std::min(hole, end);
      uint8_t* dst = (*memory)->base_ + (data - static_cast<off_t>(offset));
      off_t at = data;
      while (at < hole) {
        const ssize_t n =
            ::pread(fd, dst + (at - data), static_cast<size_t>(hole - at), at);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return absl::ErrnoToStatus(errno, "reading a memory file");
        if (n == 0) {
          return absl::OutOfRangeError(absl::StrFormat(
              "memory file ends at byte %d, inside guest RAM", at));
        }
        at += n;
      }
      data = hole;
    }
    return memory;
  }
  if (size_bytes == 0 || size_bytes % k2MiB != 0 || size_bytes > kMaxSize ||
      offset % kPageSize != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "guest memory of %d bytes at file offset %d: the size must be a "
        "non-zero multiple of 2 MiB (at most 1 TiB), the offset page aligned",
        size_bytes, offset));
  }
  const int own = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return absl::ErrnoToStatus(errno, "dup of the memory file");
  void* p = ::mmap(nullptr, size_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_NORESERVE, fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) {
    const int err = errno;
    ::close(own);
    return absl::ErrnoToStatus(
        err, absl::StrFormat("mmap of %d MiB of guest memory from its file",
                             size_bytes >> 20));
  }
  std::unique_ptr<GuestMemory> memory(
      new GuestMemory(static_cast<uint8_t*>(p), size_bytes));
  memory->source_fd_ = own;
  memory->source_offset_ = offset;
  return memory;
}

absl::Status GuestMemory::Discard() {
  if (source_fd_ >= 0) {
    // A private file mapping would read the file again after MADV_DONTNEED:
    // replace it with anonymous memory at the same address.
    void* p =
        ::mmap(base_, size_, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    if (p == MAP_FAILED) {
      return absl::ErrnoToStatus(errno, "remapping guest memory anonymous");
    }
    ::close(source_fd_);
    source_fd_ = -1;
    source_offset_ = 0;
    return absl::OkStatus();
  }
  if (::madvise(base_, size_, MADV_DONTNEED) < 0) {
    return absl::ErrnoToStatus(errno, "madvise(MADV_DONTNEED) of guest memory");
  }
  return absl::OkStatus();
}

const GuestMemory::Region* GuestMemory::Find(uint64_t gpa, uint64_t len) const {
  for (const Region& r : regions_) {
    // Written so nothing can overflow: first gpa is inside (or at the end of)
    // the region, then the length fits in what is left of it.
    if (gpa >= r.gpa && gpa - r.gpa <= r.size && len <= r.size - (gpa - r.gpa))
      return &r;
  }
  return nullptr;
}

bool GuestMemory::Contains(uint64_t gpa, uint64_t len) const {
  return Find(gpa, len) != nullptr;
}

absl::Status GuestMemory::RangeError(uint64_t gpa, uint64_t len) const {
  return absl::OutOfRangeError(absl::StrFormat(
      "guest-physical range [0x%x, +0x%x) is not inside guest RAM (%d MiB: [0, "
      "0x%x)%s)",
      gpa, len, size_ >> 20, regions_[0].size,
      regions_.size() > 1
          ? absl::StrFormat(" and [0x%x, 0x%x)", regions_[1].gpa,
                            regions_[1].gpa + regions_[1].size)
          : ""));
}

absl::Status GuestMemory::Read(uint64_t gpa, std::span<uint8_t> out) const {
  const Region* r = Find(gpa, out.size());
  if (r == nullptr) return RangeError(gpa, out.size());
  std::memcpy(out.data(), r->host + (gpa - r->gpa), out.size());
  return absl::OkStatus();
}

absl::Status GuestMemory::Write(uint64_t gpa, std::span<const uint8_t> data) {
  const Region* r = Find(gpa, data.size());
  if (r == nullptr) return RangeError(gpa, data.size());
  std::memcpy(r->host + (gpa - r->gpa), data.data(), data.size());
  return absl::OkStatus();
}

absl::Status GuestMemory::Fill(uint64_t gpa, uint64_t len, uint8_t byte) {
  const Region* r = Find(gpa, len);
  if (r == nullptr) return RangeError(gpa, len);
  std::memset(r->host + (gpa - r->gpa), byte, len);
  return absl::OkStatus();
}

absl::StatusOr<std::span<uint8_t>> GuestMemory::GetSpan(uint64_t gpa,
                                                        uint64_t len) {
  const Region* r = Find(gpa, len);
  if (r == nullptr) return RangeError(gpa, len);
  return std::span<uint8_t>(r->host + (gpa - r->gpa), len);
}

absl::StatusOr<std::span<const uint8_t>> GuestMemory::GetSpan(
    uint64_t gpa, uint64_t len) const {
  const Region* r = Find(gpa, len);
  if (r == nullptr) return RangeError(gpa, len);
  return std::span<const uint8_t>(r->host + (gpa - r->gpa), len);
}

}  // namespace vid
