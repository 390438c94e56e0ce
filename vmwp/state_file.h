#ifndef HVSTACK_VMWP_STATE_FILE_H_
#define HVSTACK_VMWP_STATE_FILE_H_

// The state file of a saved VM (issue 14): a 32-byte header, then one
// serialized hvstack.saved.SavedVm (vmwp/saved_state.proto).
//
//   0   "HVSTSAVE"       magic
//   8   u32 format       kStateFileFormat
//   12  u32 header size  32
//   16  u64 length       payload bytes
//   24  u32 crc32        zlib CRC-32 of the payload
//   28  u32 reserved     0
//
// Little-endian. A file that is shorter than its header says, or whose
// payload does not match its CRC, is refused naming the problem: a torn or
// damaged file is never restored from.

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vmwp/saved_state.pb.h"

namespace vmwp {

inline constexpr uint32_t kStateFileFormat = 1;
inline constexpr uint32_t kStateFileHeaderSize = 32;
// A state file is CPU, device and VMBus state: far below this. Bigger ones
// are refused before anything is allocated for them.
inline constexpr uint64_t kMaxStateFileBytes = 256ull << 20;

// Writes the header and `vm` to `fd` (an empty file opened for writing),
// then fdatasync.
absl::Status WriteStateFile(int fd, const hvstack::saved::SavedVm& vm);

// Reads, checks and parses the state file at `fd` (from offset 0).
absl::StatusOr<hvstack::saved::SavedVm> ReadStateFile(int fd);
// The same, from bytes (for the fuzz target and tests).
absl::StatusOr<hvstack::saved::SavedVm> ParseStateFile(const uint8_t* data,
                                                       uint64_t size);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_STATE_FILE_H_
