#include "vmms/disk_image.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/scoped_fd.h"
#include "nlohmann/json.hpp"
#include "vmms/disk_table.h"
#include "vmms/qemu_process.h"
#include "vmms/validation.h"

namespace vmms {
namespace {

using hvstack::v1::Disk;

constexpr absl::Duration kProbeTimeout = absl::Seconds(20);

// The first line of qemu-img's complaint, without its "qemu-img: " prefix.
std::string ToolMessage(absl::string_view err) {
  std::string line(absl::StripAsciiWhitespace(
      std::vector<absl::string_view>(absl::StrSplit(err, '\n')).front()));
  absl::string_view view = line;
  absl::ConsumePrefix(&view, "qemu-img: ");
  return Quoted(view);
}

}  // namespace

absl::StatusOr<ImageInfo> ParseQemuImgInfo(absl::string_view json) {
  nlohmann::json doc = nlohmann::json::parse(json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("format") ||
      !doc["format"].is_string() || !doc.contains("virtual-size") ||
      !doc["virtual-size"].is_number_unsigned()) {
    return absl::InvalidArgumentError(
        "qemu-img info printed no image description");
  }
  ImageInfo info;
  info.format = doc["format"].get<std::string>();
  info.virtual_size = doc["virtual-size"].get<uint64_t>();
  if (doc.contains("backing-filename") && doc["backing-filename"].is_string())
    info.backing_file = doc["backing-filename"].get<std::string>();
  if (doc.contains("backing-filename-format") &&
      doc["backing-filename-format"].is_string())
    info.backing_format = doc["backing-filename-format"].get<std::string>();
  if (doc.contains("encrypted") && doc["encrypted"].is_boolean())
    info.encrypted = doc["encrypted"].get<bool>();
  if (doc.contains("format-specific") && doc["format-specific"].is_object()) {
    const nlohmann::json& specific = doc["format-specific"];
    if (specific.contains("data") && specific["data"].is_object()) {
      const nlohmann::json& data = specific["data"];
      if (data.contains("data-file") && data["data-file"].is_string())
        info.data_file = data["data-file"].get<std::string>();
      if (data.contains("corrupt") && data["corrupt"].is_boolean())
        info.corrupt = data["corrupt"].get<bool>();
      if (data.contains("encrypt") && data["encrypt"].is_object())
        info.encrypted = true;
    }
  }
  return info;
}

absl::StatusOr<ImageInfo> ProbeImage(const std::string& path,
                                     const std::string& format) {
  absl::StatusOr<std::string> qemu_img = LocateQemuTool("qemu-img");
  if (!qemu_img.ok()) return qemu_img.status();
  std::vector<std::string> argv = {*qemu_img, "info", "-U", "--output=json"};
  if (!format.empty()) {
    argv.push_back("-f");
    argv.push_back(format);
  }
  // "--" ends the options: a path is never taken for one.
  argv.push_back("--");
  argv.push_back(path);
  absl::StatusOr<ToolResult> run = RunConfinedTool(argv, kProbeTimeout);
  if (!run.ok()) return run.status();
  if (!WIFEXITED(run->wait_status) || WEXITSTATUS(run->wait_status) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("qemu-img cannot read it",
                     format.empty() ? "" : absl::StrCat(" as ", format), ": ",
                     ToolMessage(run->err)));
  }
  return ParseQemuImgInfo(run->out);
}

absl::StatusOr<Disk> CheckDiskImage(const Disk& disk, absl::string_view field) {
  const std::string& path = disk.path();
  auto invalid = [&](absl::string_view problem) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": disk ", Quoted(path), " ", problem));
  };
  if (path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".path is empty: give the image's absolute path"));
  }
  if (path.size() > PATH_MAX - 1) {
    return invalid(absl::StrCat("is too long: a path is at most ", PATH_MAX - 1,
                                " bytes"));
  }
  if (path.find('\0') != std::string::npos) return invalid("has a NUL byte");
  if (path.front() != '/') {
    return invalid(
        "is not an absolute path (vmms does not share the client's working "
        "directory)");
  }
  if (!hvstack::v1::DiskFormat_IsValid(disk.format())) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".format ", static_cast<int>(disk.format()),
                     " is not a DiskFormat (raw = 1, qcow2 = 2, vhdx = 3)"));
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return invalid("does not exist");
    return invalid(absl::StrCat("cannot be used: ", std::strerror(errno)));
  }
  if (S_ISDIR(st.st_mode)) return invalid("is a directory, not a disk image");
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return invalid("is not a regular file or a block device");
  base::ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return invalid(
        absl::StrCat("cannot be opened for reading: ", std::strerror(errno)));
  }
  if (!disk.read_only()) {
    base::ScopedFd rw(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!rw) {
      return invalid(
          absl::StrCat("cannot be opened for writing: ", std::strerror(errno),
                       " (attach it read-only?)"));
    }
  }
  uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode) && ::ioctl(fd.get(), BLKGETSIZE64, &file_size) != 0)
    return invalid(absl::StrCat("has no size: ", std::strerror(errno)));

  // qemu-img probes; the result is recorded and never probed again.
  absl::StatusOr<ImageInfo> info = ProbeImage(path, "");
  if (!info.ok()) {
    if (absl::IsInvalidArgument(info.status()))
      return invalid(info.status().message());
    return info.status();
  }
  Disk resolved = disk;
  const hvstack::v1::DiskFormat detected = DiskFormatFromName(info->format);
  if (detected == hvstack::v1::DISK_FORMAT_UNSPECIFIED) {
    return invalid(absl::StrCat(
        "is a ", Quoted(info->format),
        " image; hvstack serves raw, qcow2 and vhdx (convert it: qemu-img "
        "convert -O qcow2 ...)"));
  }
  if (disk.format() != hvstack::v1::DISK_FORMAT_UNSPECIFIED &&
      disk.format() != detected) {
    if (detected == hvstack::v1::DISK_FORMAT_RAW) {
      return invalid(absl::StrCat(
          "is not a ", DiskFormatName(disk.format()),
          " image: it has no such header (qemu-img sees raw data)"));
    }
    return invalid(absl::StrCat(
        "is a ", info->format, " image, not ", DiskFormatName(disk.format()),
        " (leave the format out, or give format=", info->format, ")"));
  }
  resolved.set_format(detected);
  if (!info->backing_file.empty()) {
    return invalid(absl::StrCat("has a backing file (",
                                Quoted(info->backing_file),
                                "); backing chains are not supported: "
                                "flatten it with qemu-img convert"));
  }
  if (!info->data_file.empty())
    return invalid("has an external data file, which is not supported");
  if (info->encrypted) return invalid("is encrypted, which is not supported");
  if (info->corrupt) {
    return invalid(
        "is marked corrupt by qemu-img; repair it (qemu-img check -r all) "
        "first");
  }
  const uint64_t size =
      detected == hvstack::v1::DISK_FORMAT_RAW ? file_size : info->virtual_size;
  if (size == 0) return invalid("is empty (0 bytes)");
  if (size % kDiskSectorBytes != 0) {
    return invalid(absl::StrCat("is ", size, " bytes, not a multiple of ",
                                kDiskSectorBytes,
                                " (the sector size): resize it"));
  }
  return resolved;
}

}  // namespace vmms
