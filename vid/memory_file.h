#ifndef HVSTACK_VID_MEMORY_FILE_H_
#define HVSTACK_VID_MEMORY_FILE_H_

// A saved VM's guest memory in a file of its own (issue 14):
//
//   [0, 4096)              header (MemoryFileHeader, little-endian)
//   [4096, 4096 + size)    guest RAM as GuestMemory lays it out (low RAM,
//                          then RAM above 4 GiB), byte for byte
//
// The file is sparse: a page that was never touched (not resident) or is all
// zero is not written, so it stays a hole and reads as zero. Restoring maps
// the RAM part MAP_PRIVATE or reads its data extents (GuestMemory::LoadMode).
// The page-aligned RAM offset is what lets the file be mapped.
//
// The header ties the file to the VM state it belongs to (`save_id`, also in
// the state file) and says how big RAM is; it is written last, so a file
// whose writing was interrupted has no valid header. Guest memory content is
// not checksummed (a restore by mapping reads nothing up front).

#include <array>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vid/guest_memory.h"

namespace vid {

inline constexpr uint64_t kMemoryFileHeaderSize = 4096;
inline constexpr char kMemoryFileMagic[8] = {'H', 'V', 'S', 'T',
                                             'M', 'E', 'M', '1'};
inline constexpr uint32_t kMemoryFileVersion = 1;

using SaveId = std::array<uint8_t, 16>;

struct MemoryFileHeader {
  char magic[8];
  uint32_t version;
  uint32_t page_size;
  uint64_t memory_bytes;
  uint64_t data_offset;
  uint8_t save_id[16];
  uint64_t pages_written;
};
static_assert(sizeof(MemoryFileHeader) == 56);

struct MemorySaveStats {
  uint64_t pages_total = 0;
  uint64_t pages_resident = 0;  // candidates examined
  uint64_t pages_written = 0;   // non-zero pages in the file
  uint64_t write_calls = 0;
};

// Writes `memory` to `fd` (an empty regular file opened for writing, handed
// over by vmms): data pages, then the size, then the header, then
// fdatasync. Call with the guest stopped. Pages are looked at only if they
// may be non-zero: resident (mincore) or, for RAM mapped from an earlier
// memory file, inside that file's data extents.
absl::StatusOr<MemorySaveStats> WriteMemoryFile(const GuestMemory& memory,
                                                int fd, const SaveId& save_id);

// Reads and checks the header: magic, version, page size, data offset,
// `memory_bytes` and `save_id` as expected, and a file long enough to hold
// all of RAM. FailedPrecondition / InvalidArgument naming what differs, e.g.
// "memory file is 1048576 bytes; 4096 + 67108864 expected (truncated?)".
absl::StatusOr<MemoryFileHeader> CheckMemoryFile(int fd, uint64_t memory_bytes,
                                                 const SaveId& save_id);

// CheckMemoryFile, then GuestMemory::CreateFromFile.
absl::StatusOr<std::unique_ptr<GuestMemory>> LoadMemoryFile(
    int fd, uint64_t memory_bytes, const SaveId& save_id,
    GuestMemory::LoadMode mode);

}  // namespace vid

#endif  // HVSTACK_VID_MEMORY_FILE_H_
