// libFuzzer target: the bzImage setup header parser, the placement that
// follows it, and the zero page built from the parsed header. The input is the
// start of a file; it is parsed both as a whole file and as the head of a much
// larger one (the usual case: a 10 MiB bzImage whose first 0x290 bytes are
// read).
#include <cstdint>
#include <cstdlib>
#include <span>

#include "kernel_probe/guest_layout.h"
#include "kernel_probe/kernel_image.h"
#include "vmwp/loader/zero_page.h"

namespace {

void Check(std::span<const uint8_t> head, uint64_t file_size) {
  absl::StatusOr<kernel_probe::BzImageHeader> h =
      kernel_probe::ParseBzImageHeader(head, file_size);
  if (!h.ok()) {
    if (h.status().code() != absl::StatusCode::kInvalidArgument) abort();
    return;
  }
  if (h->version < kernel_probe::kMinBootProtocol || h->setup_sects == 0 ||
      h->setup_sects > kernel_probe::kMaxSetupSects ||
      h->setup_bytes + h->payload_size != file_size ||
      h->setup_header.size() > 0x290 - 0x1F1) {
    abort();
  }
  for (uint64_t mib : {2ull, 64ull, 256ull, 8192ull}) {
    absl::StatusOr<kernel_probe::BzImagePlacement> p =
        kernel_probe::PlaceBzImage(*h, mib << 20);
    if (!p.ok()) continue;
    const uint64_t low_end = std::min(mib << 20, kernel_probe::kLowRamEnd);
    if (p->start < 0x100000 || p->end > low_end ||
        p->entry64 != p->load_address + 0x200 ||
        p->load_address + h->payload_size > p->end ||
        p->runtime_start + h->init_size > p->end) {
      abort();
    }
  }
  vmwp::ZeroPageParams params;
  params.setup_header = h->setup_header;
  absl::StatusOr<vmwp::ZeroPage> page = vmwp::BuildZeroPage(params);
  if (!page.ok()) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  Check(bytes, size);
  Check(bytes.first(std::min<size_t>(size, kernel_probe::kBzImageHeadBytes)),
        uint64_t{size} * 4096 + 17);
  return 0;
}
