#include "vmwp/loader/zero_page.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace vmwp {
namespace {

template <typename T>
void Put(ZeroPage& page, size_t offset, T value) {
  // x86 is little-endian and so is the zero page; memcpy keeps it
  // alignment-safe.
  std::memcpy(page.data() + offset, &value, sizeof(T));
}

struct Reserved {
  uint64_t start;
  uint64_t end;
};

// Below 1 MiB, in address order.
constexpr Reserved kReservedLow[] = {
    {0, kBootStructuresEnd},
    {kCmdlineAddress, kCmdlineAddress + kCmdlineAreaSize},
    {kLegacyHoleStart, kLegacyHoleEnd},
};

void Emit(std::vector<E820Entry>& map, uint64_t start, uint64_t end,
          uint32_t type) {
  if (start >= end) return;
  // Merge with the previous entry when contiguous and of the same type.
  if (!map.empty() && map.back().type == type &&
      map.back().addr + map.back().size == start) {
    map.back().size += end - start;
    return;
  }
  map.push_back({start, end - start, type});
}

}  // namespace

std::vector<E820Entry> BuildE820Map(std::span<const GpaRange> ram) {
  std::vector<E820Entry> map;
  for (const GpaRange& r : ram) {
    uint64_t pos = r.start;
    for (const Reserved& res : kReservedLow) {
      const uint64_t start = std::max(res.start, r.start);
      const uint64_t end = std::min(res.end, r.end);
      if (start >= end || start < pos) continue;
      Emit(map, pos, start, E820Entry::kRam);
      Emit(map, start, end, E820Entry::kReserved);
      pos = end;
    }
    Emit(map, pos, r.end, E820Entry::kRam);
  }
  return map;
}

absl::StatusOr<ZeroPage> BuildZeroPage(const ZeroPageParams& params) {
  namespace bp = bootparam;
  if (params.e820.size() > bp::kE820MaxEntries) {
    return absl::InvalidArgumentError(
        absl::StrFormat("zero page: %d e820 entries, the limit is %d",
                        params.e820.size(), bp::kE820MaxEntries));
  }
  ZeroPage page{};
  Put<uint16_t>(page, bp::kBootFlag, bp::kBootFlagValue);
  Put<uint32_t>(page, bp::kHeader, bp::kHeaderMagic);
  Put<uint16_t>(page, bp::kVersion, bp::kProtocolVersion);
  Put<uint8_t>(page, bp::kTypeOfLoader, bp::kLoaderTypeUndefined);
  Put<uint8_t>(page, bp::kLoadFlags, bp::kLoadedHigh);
  Put<uint32_t>(page, bp::kCmdLinePtr,
                static_cast<uint32_t>(params.cmdline_gpa));
  Put<uint32_t>(page, bp::kExtCmdLinePtr,
                static_cast<uint32_t>(params.cmdline_gpa >> 32));
  Put<uint32_t>(page, bp::kCmdlineSize, params.cmdline_size);
  Put<uint8_t>(page, bp::kE820Entries,
               static_cast<uint8_t>(params.e820.size()));
  for (size_t i = 0; i < params.e820.size(); ++i) {
    const size_t at = bp::kE820Table + i * bp::kE820EntryBytes;
    Put<uint64_t>(page, at, params.e820[i].addr);
    Put<uint64_t>(page, at + 8, params.e820[i].size);
    Put<uint32_t>(page, at + 16, params.e820[i].type);
  }
  return page;
}

}  // namespace vmwp
