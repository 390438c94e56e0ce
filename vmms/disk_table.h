#ifndef HVSTACK_VMMS_DISK_TABLE_H_
#define HVSTACK_VMMS_DISK_TABLE_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/hvstack/v1/vm.pb.h"
#include "vmms/sqlite_db.h"

namespace vmms {

// The `vm_disks` table (schema v10): one row per attached disk, ordered by
// `position`. SQL only, no locking: VmStore calls these inside its own
// transactions.

// "raw", "qcow2", "vhdx" (the stored spelling); "unspecified" otherwise.
const char* DiskFormatName(hvstack::v1::DiskFormat format);
// The inverse; DISK_FORMAT_UNSPECIFIED for anything else.
hvstack::v1::DiskFormat DiskFormatFromName(absl::string_view name);
// "0:0:3" (controller:target:lun).
std::string ScsiAddressText(const hvstack::v1::ScsiAddress& address);

// hvstack's one SCSI controller: controller 0, target 0, LUNs 0..63 (a
// Hyper-V SCSI controller holds 64 disks).
inline constexpr uint32_t kMaxDisksPerVm = 64;

// Checks `disk` against the VM's `existing` disks and gives it its address:
// the requested one (`disk->has_address()`), which must be within the limits
// above and free, else the lowest free LUN. A path attached already is
// refused. INVALID_ARGUMENT naming `field`, the path or address and the rule.
absl::Status AssignDiskAddress(const std::vector<hvstack::v1::Disk>& existing,
                               absl::string_view field,
                               hvstack::v1::Disk* disk);

// Appends `disk` (format resolved, address and serial assigned) after the
// VM's last disk.
absl::Status AppendDisk(Database& db, const std::string& vm_uuid,
                        const hvstack::v1::Disk& disk);

// The VM's disks in order.
absl::StatusOr<std::vector<hvstack::v1::Disk>> ReadDisks(
    Database& db, const std::string& vm_uuid);
// Every VM's disks, by VM uuid (for List).
absl::StatusOr<std::map<std::string, std::vector<hvstack::v1::Disk>>>
ReadAllDisks(Database& db);

// Removes the disk with `path`, or (path empty) at `address`; returns it.
// NOT_FOUND when the VM has no such disk.
absl::StatusOr<hvstack::v1::Disk> DeleteDisk(
    Database& db, const std::string& vm_uuid, const std::string& path,
    const hvstack::v1::ScsiAddress& address);

}  // namespace vmms

#endif  // HVSTACK_VMMS_DISK_TABLE_H_
