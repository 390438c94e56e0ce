#include "vmwp/loader/start_info.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace vmwp::pvh {
namespace {

template <typename T>
void Put(StartInfoPage& page, size_t offset, T value) {
  std::memcpy(page.data() + offset, &value, sizeof(T));
}

}  // namespace

absl::StatusOr<StartInfoPage> BuildStartInfoPage(const StartInfoParams& params,
                                                 uint64_t page_gpa) {
  if (params.memmap.size() > kMaxMemmapEntries) {
    return absl::InvalidArgumentError(
        absl::StrFormat("start_info: %d memory map entries, the limit is %d",
                        params.memmap.size(), kMaxMemmapEntries));
  }
  StartInfoPage page{};
  Put<uint32_t>(page, kMagic, kStartInfoMagic);
  Put<uint32_t>(page, kVersion, kStartInfoVersion);
  Put<uint32_t>(page, kFlags, 0);
  Put<uint64_t>(page, kCmdlinePaddr, params.cmdline_gpa);
  Put<uint64_t>(page, kRsdpPaddr, params.rsdp_gpa);
  if (params.initrd) {
    Put<uint32_t>(page, kNrModules, 1);
    Put<uint64_t>(page, kModlistPaddr, page_gpa + kModlistOffset);
    Put<uint64_t>(page, kModlistOffset, params.initrd->gpa);
    Put<uint64_t>(page, kModlistOffset + 8, params.initrd->size);
    // cmdline_paddr and reserved stay 0.
  }
  Put<uint64_t>(page, kMemmapPaddr, page_gpa + kMemmapOffset);
  Put<uint32_t>(page, kMemmapEntries,
                static_cast<uint32_t>(params.memmap.size()));
  for (size_t i = 0; i < params.memmap.size(); ++i) {
    const size_t at = kMemmapOffset + i * kMemmapEntryBytes;
    Put<uint64_t>(page, at, params.memmap[i].addr);
    Put<uint64_t>(page, at + 8, params.memmap[i].size);
    Put<uint32_t>(page, at + 16, params.memmap[i].type);
  }
  return page;
}

}  // namespace vmwp::pvh
