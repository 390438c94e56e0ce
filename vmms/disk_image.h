#ifndef HVSTACK_VMMS_DISK_IMAGE_H_
#define HVSTACK_VMMS_DISK_IMAGE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/hvstack/v1/vm.pb.h"

namespace vmms {

// The sector size every disk is a multiple of.
inline constexpr uint64_t kDiskSectorBytes = 512;

// What `qemu-img info --output=json` says about an image.
struct ImageInfo {
  // As qemu-img names it: "raw", "qcow2", "vhdx", "vmdk", ...
  std::string format;
  uint64_t virtual_size = 0;
  std::string backing_file;    // Empty without a backing file.
  std::string backing_format;  // As qemu-img names it, when recorded.
  std::string data_file;       // qcow2 external data file, if any.
  bool encrypted = false;
  bool corrupt = false;
};

// Parses qemu-img's JSON (nlohmann-json). INVALID_ARGUMENT for text that is
// not the object qemu-img prints.
absl::StatusOr<ImageInfo> ParseQemuImgInfo(absl::string_view json);

// Runs `qemu-img info -U --output=json [-f FORMAT] PATH` confined (see
// qemu_process.h). `format` empty: qemu-img probes. INVALID_ARGUMENT with
// qemu-img's own message when it cannot read the file as that format.
absl::StatusOr<ImageInfo> ProbeImage(const std::string& path,
                                     const std::string& format);

// The checks at CreateVm/AttachDisk for one disk (`field` names it in
// messages, e.g. "config.disks[1]"): an absolute path of an existing regular
// file or block device that vmms can open for reading (and, unless
// read_only, for writing), whose content qemu-img reads as `disk.format`
// (UNSPECIFIED: whatever raw/qcow2/vhdx it detects), without a backing
// chain, external data file or encryption, and whose size is a non-zero
// multiple of 512 bytes. Returns the disk with its format resolved.
// INVALID_ARGUMENT naming the field, the path and the problem.
absl::StatusOr<hvstack::v1::Disk> CheckDiskImage(const hvstack::v1::Disk& disk,
                                                 absl::string_view field);

}  // namespace vmms

#endif  // HVSTACK_VMMS_DISK_IMAGE_H_
