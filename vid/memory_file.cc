#include "vid/memory_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"

namespace vid {
namespace {

constexpr uint64_t kPage = GuestMemory::kPageSize;
// mincore and the zero check work through RAM in chunks of this many bytes.
constexpr uint64_t kChunk = 8ull << 20;

bool PageIsZero(const uint8_t* page) {
  // 64-bit words; a memcmp against a zero page would read twice as much.
  const auto* w = reinterpret_cast<const uint64_t*>(page);
  uint64_t acc = 0;
  for (size_t i = 0; i < kPage / 8; i += 8) {
    acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] |
           w[i + 6] | w[i + 7];
    if (acc != 0) return false;
  }
  return true;
}

absl::Status WriteAll(int fd, const uint8_t* data, uint64_t len, off_t at,
                      MemorySaveStats& stats) {
  while (len > 0) {
    const ssize_t n = ::pwrite(fd, data, std::min<uint64_t>(len, 1u << 30), at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, "writing the memory file");
    ++stats.write_calls;
    data += n;
    len -= static_cast<uint64_t>(n);
    at += n;
  }
  return absl::OkStatus();
}

// Marks in `candidate` (one byte per page of [0, len)) the pages of a private
// file mapping that lie in the source file's data extents.
absl::Status MarkSourceData(int fd, uint64_t offset, uint64_t len,
                            std::vector<uint8_t>& candidate) {
  const off_t end = static_cast<off_t>(offset + len);
  off_t data = static_cast<off_t>(offset);
  while (data < end) {
    data = ::lseek(fd, data, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) return absl::OkStatus();
      return absl::ErrnoToStatus(errno, "lseek(SEEK_DATA) in the source file");
    }
    if (data >= end) return absl::OkStatus();
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) {
      return absl::ErrnoToStatus(errno, "lseek(SEEK_HOLE) in the source file");
    }
    hole = std::min(hole, end);
    const uint64_t first = (static_cast<uint64_t>(data) - offset) / kPage;
    const uint64_t last =
        (static_cast<uint64_t>(hole) - offset + kPage - 1) / kPage;
    for (uint64_t p = first; p < last && p < candidate.size(); ++p)
      candidate[p] = 1;
    data = hole;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<MemorySaveStats> WriteMemoryFile(const GuestMemory& memory,
                                                int fd, const SaveId& save_id) {
  MemorySaveStats stats;
  const uint64_t size = memory.size();
  const uint8_t* base = memory.host_base();
  stats.pages_total = size / kPage;
  if (::ftruncate(fd, 0) < 0) {
    return absl::ErrnoToStatus(errno, "emptying the memory file");
  }
  std::vector<uint8_t> candidate;
  for (uint64_t chunk = 0; chunk < size; chunk += kChunk) {
    const uint64_t len = std::min(kChunk, size - chunk);
    const uint64_t pages = len / kPage;
    candidate.assign(pages, 0);
    if (::mincore(const_cast<uint8_t*>(base + chunk), len, candidate.data()) <
        0) {
      return absl::ErrnoToStatus(errno, "mincore over guest memory");
    }
    for (uint8_t& c : candidate) c &= 1;
    if (memory.source_fd() >= 0) {
      if (absl::Status s =
              MarkSourceData(memory.source_fd(), memory.source_offset() + chunk,
                             len, candidate);
          !s.ok()) {
        return s;
      }
    }
    // Runs of non-zero candidate pages, each written with one pwrite.
    uint64_t run_start = 0, run_len = 0;
    auto flush = [&]() -> absl::Status {
      if (run_len == 0) return absl::OkStatus();
      const uint64_t at = chunk + run_start * kPage;
      absl::Status s =
          WriteAll(fd, base + at, run_len * kPage,
                   static_cast<off_t>(kMemoryFileHeaderSize + at), stats);
      stats.pages_written += run_len;
      run_len = 0;
      return s;
    };
    for (uint64_t p = 0; p < pages; ++p) {
      bool write = false;
      if (candidate[p]) {
        ++stats.pages_resident;
        write = !PageIsZero(base + chunk + p * kPage);
      }
      if (write) {
        if (run_len == 0) run_start = p;
        ++run_len;
      } else if (absl::Status s = flush(); !s.ok()) {
        return s;
      }
    }
    if (absl::Status s = flush(); !s.ok()) return s;
  }
  if (::ftruncate(fd, static_cast<off_t>(kMemoryFileHeaderSize + size)) < 0) {
    return absl::ErrnoToStatus(errno, "sizing the memory file");
  }
  MemoryFileHeader header{};
  std::memcpy(header.magic, kMemoryFileMagic, sizeof(header.magic));
  header.version = kMemoryFileVersion;
  header.page_size = kPage;
  header.memory_bytes = size;
  header.data_offset = kMemoryFileHeaderSize;
  std::memcpy(header.save_id, save_id.data(), save_id.size());
  header.pages_written = stats.pages_written;
  if (absl::Status s = WriteAll(fd, reinterpret_cast<const uint8_t*>(&header),
                                sizeof(header), 0, stats);
      !s.ok()) {
    return s;
  }
  if (::fdatasync(fd) < 0) {
    return absl::ErrnoToStatus(errno, "fdatasync of the memory file");
  }
  return stats;
}

absl::StatusOr<MemoryFileHeader> CheckMemoryFile(int fd, uint64_t memory_bytes,
                                                 const SaveId& save_id) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) {
    return absl::ErrnoToStatus(errno, "fstat of the memory file");
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError("the memory file is not a regular file");
  }
  MemoryFileHeader header{};
  const ssize_t n = ::pread(fd, &header, sizeof(header), 0);
  if (n < 0) return absl::ErrnoToStatus(errno, "reading the memory file");
  if (static_cast<size_t>(n) < sizeof(header)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "memory file: %d bytes, too short for its header (truncated?)",
        st.st_size));
  }
  if (std::memcmp(header.magic, kMemoryFileMagic, sizeof(header.magic)) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "memory file: bad magic \"%s\" (not a memory file, or its writing was "
        "interrupted)",
        absl::CHexEscape(std::string(header.magic, sizeof(header.magic)))));
  }
  if (header.version != kMemoryFileVersion) {
    return absl::FailedPreconditionError(
        absl::StrFormat("memory file format version %d; this worker reads %d",
                        header.version, kMemoryFileVersion));
  }
  if (header.page_size != kPage ||
      header.data_offset != kMemoryFileHeaderSize) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "memory file: page size %d, data offset %d (expected "
        "%d and %d)",
        header.page_size, header.data_offset, kPage, kMemoryFileHeaderSize));
  }
  if (header.memory_bytes != memory_bytes) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "memory file holds %d MiB of guest memory; the VM has %d MiB",
        header.memory_bytes >> 20, memory_bytes >> 20));
  }
  if (std::memcmp(header.save_id, save_id.data(), save_id.size()) != 0) {
    return absl::FailedPreconditionError(
        "memory file belongs to another save than the state file (save ids "
        "differ)");
  }
  const uint64_t expected = kMemoryFileHeaderSize + memory_bytes;
  if (static_cast<uint64_t>(st.st_size) < expected) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "memory file is %d bytes; %d + %d expected (truncated?)", st.st_size,
        kMemoryFileHeaderSize, memory_bytes));
  }
  return header;
}

absl::StatusOr<std::unique_ptr<GuestMemory>> LoadMemoryFile(
    int fd, uint64_t memory_bytes, const SaveId& save_id,
    GuestMemory::LoadMode mode) {
  absl::StatusOr<MemoryFileHeader> header =
      CheckMemoryFile(fd, memory_bytes, save_id);
  if (!header.ok()) return header.status();
  return GuestMemory::CreateFromFile(memory_bytes, fd, kMemoryFileHeaderSize,
                                     mode);
}

}  // namespace vid
