#ifndef HVSTACK_VMWP_BOOT_BOOT_VP_H_
#define HVSTACK_VMWP_BOOT_BOOT_VP_H_

#include "absl/status/statusor.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "vid/partition.h"
#include "vmwp/boot/boot_image.h"

namespace vmwp {

// True when vid can start the boot VP in 32-bit protected mode
// (vid::Partition::PrepareBootVpProtectedMode, for the PVH entry).
bool PartitionSupportsPvhEntry();

// Puts VP 0 at the kernel's entry: 64-bit long mode with RSI = the zero page,
// or 32-bit protected mode with EBX = hvm_start_info (PVH).
absl::Status PrepareBootVp(vid::Partition& partition, const BootImage& image);

// What the worker calls once the partition exists: loads the kernel, initrd,
// command line, ACPI tables (for the config's vCPU count) and zero page or
// start_info (LoadBootImage), logs a summary and the e820 map in Linux's own
// format ("BIOS-e820: [mem 0x...-0x...] usable"), and prepares the boot VP.
absl::StatusOr<BootImage> BootGuest(
    const hvstack::internal::WorkerConfig& config, vid::Partition& partition);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_BOOT_BOOT_VP_H_
