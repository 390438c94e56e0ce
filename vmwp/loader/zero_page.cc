#include "vmwp/loader/zero_page.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace vmwp {

using kernel_probe::GpaRange;
using kernel_probe::kBootStructuresEnd;
using kernel_probe::kCmdlineAddress;
using kernel_probe::kCmdlineAreaSize;
using kernel_probe::kLegacyHoleEnd;
using kernel_probe::kLegacyHoleStart;

namespace {

template <typename T>
void Put(ZeroPage& page, size_t offset, T value) {
  // x86 is little-endian and so is the zero page; memcpy keeps it
  // alignment-safe.
  std::memcpy(page.data() + offset, &value, sizeof(T));
}

struct Carveout {
  uint64_t start;
  uint64_t end;
  uint32_t type;
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

std::vector<E820Entry> BuildE820Map(std::span<const GpaRange> ram,
                                    std::optional<GpaRange> acpi_data) {
  // Below 1 MiB, in address order, non-overlapping.
  std::vector<Carveout> carveouts = {
      {0, kBootStructuresEnd, E820Entry::kReserved},
      {kCmdlineAddress, kCmdlineAddress + kCmdlineAreaSize,
       E820Entry::kReserved},
  };
  if (acpi_data && acpi_data->start < acpi_data->end &&
      acpi_data->start >= kLegacyHoleStart &&
      acpi_data->end <= kLegacyHoleEnd) {
    carveouts.push_back(
        {kLegacyHoleStart, acpi_data->start, E820Entry::kReserved});
    carveouts.push_back({acpi_data->start, acpi_data->end, E820Entry::kAcpi});
    carveouts.push_back({acpi_data->end, kLegacyHoleEnd, E820Entry::kReserved});
  } else {
    carveouts.push_back(
        {kLegacyHoleStart, kLegacyHoleEnd, E820Entry::kReserved});
  }
  std::vector<E820Entry> map;
  for (const GpaRange& r : ram) {
    uint64_t pos = r.start;
    for (const Carveout& c : carveouts) {
      const uint64_t start = std::max(c.start, r.start);
      const uint64_t end = std::min(c.end, r.end);
      if (start >= end || start < pos) continue;
      Emit(map, pos, start, E820Entry::kRam);
      Emit(map, start, end, c.type);
      pos = end;
    }
    Emit(map, pos, r.end, E820Entry::kRam);
  }
  return map;
}

std::string E820TypeName(uint32_t type) {
  // arch/x86/kernel/e820.c, e820_print_type().
  switch (type) {
    case 1:
      return "usable";
    case 2:
      return "reserved";
    case 3:
      return "ACPI data";
    case 4:
      return "ACPI NVS";
    case 5:
      return "unusable";
    default:
      return absl::StrFormat("type %u", type);
  }
}

std::vector<std::string> FormatE820Lines(std::span<const E820Entry> map) {
  std::vector<std::string> lines;
  lines.reserve(map.size());
  for (const E820Entry& e : map) {
    lines.push_back(absl::StrFormat("BIOS-e820: [mem 0x%016x-0x%016x] %s",
                                    e.addr, e.addr + e.size - 1,
                                    E820TypeName(e.type)));
  }
  return lines;
}

absl::StatusOr<ZeroPage> BuildZeroPage(const ZeroPageParams& params) {
  namespace bp = bootparam;
  if (params.e820.size() > bp::kE820MaxEntries) {
    return absl::InvalidArgumentError(
        absl::StrFormat("zero page: %d e820 entries, the limit is %d",
                        params.e820.size(), bp::kE820MaxEntries));
  }
  if (params.setup_header.size() > bp::kSetupHeaderLimit - bp::kSetupHeader) {
    return absl::InvalidArgumentError(
        absl::StrFormat("zero page: a %d-byte setup header does not fit",
                        params.setup_header.size()));
  }
  ZeroPage page{};
  if (!params.setup_header.empty()) {
    // The kernel's own header (boot_flag, "HdrS", version, cmdline_size ...):
    // the protocol asks the loader to copy it and fill in its fields.
    std::copy(params.setup_header.begin(), params.setup_header.end(),
              page.begin() + bp::kSetupHeader);
  } else {
    Put<uint16_t>(page, bp::kBootFlag, bp::kBootFlagValue);
    Put<uint32_t>(page, bp::kHeader, bp::kHeaderMagic);
    Put<uint16_t>(page, bp::kVersion, bp::kProtocolVersion);
    Put<uint32_t>(page, bp::kCmdlineSize, params.cmdline_size);
  }
  Put<uint8_t>(page, bp::kTypeOfLoader, bp::kLoaderTypeUndefined);
  Put<uint8_t>(page, bp::kLoadFlags,
               page[bp::kLoadFlags] | bp::kLoadedHigh | bp::kCanUseHeap);
  Put<uint16_t>(page, bp::kHeapEndPtr, bp::kHeapEndPtrValue);
  Put<uint32_t>(page, bp::kCmdLinePtr,
                static_cast<uint32_t>(params.cmdline_gpa));
  Put<uint32_t>(page, bp::kExtCmdLinePtr,
                static_cast<uint32_t>(params.cmdline_gpa >> 32));
  Put<uint32_t>(page, bp::kRamdiskImage,
                static_cast<uint32_t>(params.ramdisk_gpa));
  Put<uint32_t>(page, bp::kExtRamdiskImage,
                static_cast<uint32_t>(params.ramdisk_gpa >> 32));
  Put<uint32_t>(page, bp::kRamdiskSize,
                static_cast<uint32_t>(params.ramdisk_size));
  Put<uint32_t>(page, bp::kExtRamdiskSize,
                static_cast<uint32_t>(params.ramdisk_size >> 32));
  Put<uint64_t>(page, bp::kAcpiRsdpAddr, params.acpi_rsdp_gpa);
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
