#include "vmwp/boot/boot_vp.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace vmwp {
namespace {

// vid::Partition::PrepareBootVpProtectedMode(entry_eip, ebx) is being added
// alongside this code; until it exists, PVH-capable kernels are entered at
// their 64-bit ELF entry instead. Detected at compile time, so nothing needs
// editing when it lands.
template <typename P>
constexpr bool kHasProtectedModeEntry = requires(P& p) {
  p.PrepareBootVpProtectedMode(uint32_t{}, uint32_t{});
};

template <typename P>
absl::Status PrepareProtectedMode(P& partition, uint64_t entry, uint64_t ebx) {
  if constexpr (kHasProtectedModeEntry<P>) {
    return partition.PrepareBootVpProtectedMode(static_cast<uint32_t>(entry),
                                                static_cast<uint32_t>(ebx));
  } else {
    return absl::UnimplementedError(
        "vid cannot start a VP in 32-bit protected mode (PVH entry)");
  }
}

}  // namespace

bool PartitionSupportsPvhEntry() {
  return kHasProtectedModeEntry<vid::Partition>;
}

absl::Status PrepareBootVp(vid::Partition& partition, const BootImage& image) {
  if (image.mode == BootEntryMode::kProtectedMode32) {
    if (image.entry > 0xFFFFFFFFull || image.boot_params_gpa > 0xFFFFFFFFull) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "PVH entry 0x%x / start_info 0x%x are not 32-bit addresses",
          image.entry, image.boot_params_gpa));
    }
    return PrepareProtectedMode(partition, image.entry, image.boot_params_gpa);
  }
  return partition.PrepareBootVp(image.entry, image.boot_params_gpa);
}

absl::StatusOr<BootImage> BootGuest(
    const hvstack::internal::WorkerConfig& config, vid::Partition& partition) {
  BootSpec spec;
  spec.kernel_path = config.kernel_path();
  spec.initrd_path = config.initrd_path();
  spec.cmdline = config.cmdline();
  spec.acpi.vcpu_count = partition.vp_count();
  // Enlightened: the VMBus root device, so that Linux's hv_vmbus probes.
  if (partition.hyperv() != nullptr) spec.acpi.vmbus = acpi::VmbusAcpiDevice{};
  spec.use_pvh_entry = PartitionSupportsPvhEntry();
  absl::StatusOr<BootImage> image = LoadBootImage(spec, partition.memory());
  if (!image.ok()) return image.status();
  spdlog::info("{}", DescribeBootImage(*image));
  if (image->format == kernel_probe::KernelFormat::kElfPvh &&
      !spec.use_pvh_entry) {
    spdlog::warn(
        "kernel {} has a PVH entry, but vid cannot start a VP in protected "
        "mode yet: using its 64-bit entry",
        config.kernel_path());
  }
  spdlog::info("e820 map given to the guest:");
  for (const std::string& line : FormatE820Lines(image->e820))
    spdlog::info("{}", line);
  if (absl::Status s = PrepareBootVp(partition, *image); !s.ok()) {
    return absl::Status(
        s.code(), absl::StrCat("cannot prepare the boot VP: ", s.message()));
  }
  return image;
}

}  // namespace vmwp
