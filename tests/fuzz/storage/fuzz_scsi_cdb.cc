// libFuzzer target: one SCSI command from a hostile guest through the CDB
// parser and the disk's logic (vmwp/vsp/storage/scsi_*).
//
// Input: [0] disk flags (bit 0 read-only, 1 unmap, 2 4 KiB blocks, 3 tiny
// disk), [1..4] the guest's buffer size, [5] CDB length, then the CDB (up
// to 16 bytes), then parameter data (UNMAP descriptors).
// Checks: replies never exceed the buffer, CHECK CONDITION carries no
// data, every I/O lies inside the disk and fits the buffer and the maximum.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <variant>

#include "vmwp/vsp/storage/scsi_disk.h"

#define CHECK(cond) \
  if (!(cond)) __builtin_trap()

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 6) return 0;
  vsp::storage::DiskProperties p;
  p.read_only = data[0] & 1;
  p.can_unmap = (data[0] & 2) != 0;
  p.unmap_zeroes = p.can_unmap;
  p.block_size = (data[0] & 4) ? 4096 : 512;
  p.block_count = (data[0] & 8) ? 8 : (uint64_t{1} << 40) / p.block_size;
  p.serial = "fuzz";
  uint32_t buffer;
  std::memcpy(&buffer, data + 1, 4);
  buffer %= (4u << 20);
  const size_t cdb_len = data[5] % 17;
  if (size < 6 + cdb_len) return 0;
  std::span<const uint8_t> cdb(data + 6, cdb_len);
  std::span<const uint8_t> rest(data + 6 + cdb_len, size - 6 - cdb_len);
  vsp::storage::ScsiDisk disk(p);
  const uint32_t want = vsp::storage::ScsiDisk::ParameterBytes(cdb);
  std::span<const uint8_t> params =
      rest.subspan(0, std::min<size_t>({rest.size(), want, buffer}));
  vsp::storage::ScsiAction a = disk.Execute(cdb, buffer, params);
  const uint64_t capacity = p.block_count * p.block_size;
  if (auto* r = std::get_if<vsp::storage::ScsiReply>(&a)) {
    CHECK(r->data.size() <= buffer);
    if (r->status != vsp::storage::kScsiGood) CHECK(r->data.empty());
  } else {
    const auto& io = std::get<vsp::storage::DiskIo>(a);
    CHECK(!(p.read_only && (io.kind == vsp::storage::DiskIo::Kind::kWrite ||
                            io.kind == vsp::storage::DiskIo::Kind::kUnmap)));
    if (io.kind == vsp::storage::DiskIo::Kind::kRead ||
        io.kind == vsp::storage::DiskIo::Kind::kWrite) {
      CHECK(io.transfer > 0);
      CHECK(io.transfer <= buffer);
      CHECK(io.transfer <= p.max_transfer_bytes);
      CHECK(io.offset <= capacity && io.transfer <= capacity - io.offset);
    }
    for (const auto& r : io.unmap) {
      CHECK(r.length > 0);
      CHECK(r.offset <= capacity && r.length <= capacity - r.offset);
    }
  }
  return 0;
}
