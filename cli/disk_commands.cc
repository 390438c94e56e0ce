// vmctl disk add|remove|list|create, and the --disk spec of create.
#include <fcntl.h>
#include <google/protobuf/struct.pb.h>
#include <grpcpp/grpcpp.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/call_support.h"
#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/output.h"

extern char** environ;

namespace vmctl {
namespace {

std::string Absolute(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

// "0:0:3" -> address; false otherwise.
bool ParseAddress(const std::string& text, hvstack::v1::ScsiAddress* address) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  uint32_t v[3];
  if (parts.size() != 3) return false;
  for (int i = 0; i < 3; ++i) {
    if (!absl::SimpleAtoi(parts[i], &v[i])) return false;
  }
  address->set_controller(v[0]);
  address->set_target(v[1]);
  address->set_lun(v[2]);
  return true;
}

}  // namespace

bool ParseDiskFormat(const std::string& text, hvstack::v1::DiskFormat* format) {
  if (text == "raw") {
    *format = hvstack::v1::DISK_FORMAT_RAW;
  } else if (text == "qcow2") {
    *format = hvstack::v1::DISK_FORMAT_QCOW2;
  } else if (text == "vhdx") {
    *format = hvstack::v1::DISK_FORMAT_VHDX;
  } else {
    return false;
  }
  return true;
}

bool ParseDiskSpec(const std::string& spec, hvstack::v1::Disk* disk,
                   std::string* error) {
  std::vector<std::string> parts = absl::StrSplit(spec, ',');
  if (parts.empty() || parts[0].empty()) {
    *error = "no path (PATH[,format=raw|qcow2|vhdx][,readonly][,lun=N])";
    return false;
  }
  disk->set_path(Absolute(parts[0]));
  for (size_t i = 1; i < parts.size(); ++i) {
    absl::string_view option = parts[i];
    if (option == "readonly" || option == "ro") {
      disk->set_read_only(true);
    } else if (absl::ConsumePrefix(&option, "format=")) {
      hvstack::v1::DiskFormat format;
      if (!ParseDiskFormat(std::string(option), &format)) {
        *error = absl::StrCat("unknown format '", option,
                              "': use raw, qcow2 or vhdx");
        return false;
      }
      disk->set_format(format);
    } else if (absl::ConsumePrefix(&option, "lun=")) {
      uint32_t lun;
      if (!absl::SimpleAtoi(option, &lun)) {
        *error = absl::StrCat("lun '", option, "' is not a number");
        return false;
      }
      disk->mutable_address()->set_lun(lun);
    } else {
      *error = absl::StrCat("unknown option '", option,
                            "' (format=raw|qcow2|vhdx, readonly, lun=N)");
      return false;
    }
  }
  return true;
}

bool ParseDiskSize(const std::string& text, uint64_t* bytes,
                   std::string* error) {
  absl::string_view rest = absl::StripAsciiWhitespace(text);
  size_t digits = 0;
  while (digits < rest.size() && absl::ascii_isdigit(rest[digits])) ++digits;
  uint64_t value = 0;
  if (digits == 0 || !absl::SimpleAtoi(rest.substr(0, digits), &value)) {
    *error = absl::StrCat("size '", text, "' is not a number with a unit");
    return false;
  }
  const std::string upper = absl::AsciiStrToUpper(rest.substr(digits));
  absl::string_view unit = upper;
  if (!absl::ConsumeSuffix(&unit, "IB")) absl::ConsumeSuffix(&unit, "B");
  int shift = 0;
  if (unit == "K") {
    shift = 10;
  } else if (unit == "M") {
    shift = 20;
  } else if (unit == "G") {
    shift = 30;
  } else if (unit == "T") {
    shift = 40;
  } else if (!unit.empty()) {
    *error = absl::StrCat("size '", text, "': unknown unit (K, M, G, T)");
    return false;
  }
  constexpr uint64_t kMax = uint64_t{64} << 40;
  if (value == 0 || value > (kMax >> shift)) {
    *error =
        absl::StrCat("size '", text, "' must be between 512 bytes and 64T");
    return false;
  }
  *bytes = value << shift;
  if (*bytes % 512 != 0) {
    *error = absl::StrCat("size '", text,
                          "' is not a multiple of 512 bytes (the sector size)");
    return false;
  }
  return true;
}

int DiskAddCommand(Session& session, const std::string& name,
                   const std::string& spec) {
  hvstack::v1::AttachDiskRequest request;
  request.set_name(name);
  std::string error;
  if (!ParseDiskSpec(spec, request.mutable_disk(), &error)) {
    *session.err << "vmctl: " << spec << ": " << error << "\n";
    return kExitUsage;
  }
  grpc::ClientContext context;
  // The image is checked with qemu-img.
  SetDeadline(context, kWorkerDeadline);
  hvstack::v1::Vm vm;
  grpc::Status status = session.stub->AttachDisk(&context, request, &vm);
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(vm) : FormatDisks(vm));
  return kExitOk;
}

int DiskRemoveCommand(Session& session, const std::string& name,
                      const std::string& target) {
  hvstack::v1::DetachDiskRequest request;
  request.set_name(name);
  if (!ParseAddress(target, request.mutable_address())) {
    request.clear_address();
    request.set_path(Absolute(target));
  }
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  hvstack::v1::Vm vm;
  grpc::Status status = session.stub->DetachDisk(&context, request, &vm);
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(vm) : FormatDisks(vm));
  return kExitOk;
}

int DiskListCommand(Session& session, const std::string& name) {
  hvstack::v1::GetVmRequest request;
  request.set_name(name);
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  hvstack::v1::Vm vm;
  grpc::Status status = session.stub->GetVm(&context, request, &vm);
  if (!status.ok()) return Fail(session, status);
  if (session.json) {
    hvstack::v1::VmConfig disks_only;
    *disks_only.mutable_disks() = vm.config().disks();
    *session.out << FormatJson(disks_only);
  } else {
    *session.out << FormatDisks(vm);
  }
  return kExitOk;
}

int DiskCreateCommand(Session& session, const std::string& path,
                      const std::string& size_text,
                      const std::string& format_text) {
  uint64_t size = 0;
  std::string error;
  if (!ParseDiskSize(size_text, &size, &error)) {
    *session.err << "vmctl: " << error << "\n";
    return kExitInvalidArgument;
  }
  hvstack::v1::DiskFormat format;
  if (!ParseDiskFormat(format_text, &format)) {
    *session.err << "vmctl: unknown format '" << format_text
                 << "': use raw, qcow2 or vhdx\n";
    return kExitInvalidArgument;
  }
  const std::string absolute = Absolute(path);
  // O_EXCL: an existing file is never touched, whatever its format.
  const int fd =
      ::open(absolute.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    *session.err << "vmctl: cannot create " << absolute << ": "
                 << std::strerror(err)
                 << (err == EEXIST ? " (vmctl never overwrites an image)" : "")
                 << "\n";
    return err == EEXIST ? kExitConflict : kExitOther;
  }
  if (format == hvstack::v1::DISK_FORMAT_RAW) {
    // Sparse: no block is allocated until the guest writes it.
    const bool ok = ::ftruncate(fd, static_cast<off_t>(size)) == 0;
    const int err = errno;
    ::close(fd);
    if (!ok) {
      ::unlink(absolute.c_str());
      *session.err << "vmctl: cannot size " << absolute << ": "
                   << std::strerror(err) << "\n";
      return kExitOther;
    }
  } else {
    ::close(fd);
    // qemu-img writes the header into the file we reserved.
    const std::string format_name =
        format == hvstack::v1::DISK_FORMAT_QCOW2 ? "qcow2" : "vhdx";
    std::vector<std::string> args = {"qemu-img", "create",          "-q",
                                     "-f",       format_name,       "--",
                                     absolute,   absl::StrCat(size)};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid;
    int rc =
        posix_spawnp(&pid, "qemu-img", nullptr, nullptr, argv.data(), environ);
    int wait_status = 0;
    if (rc == 0) {
      while (::waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
      }
    }
    if (rc != 0 || !WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) {
      ::unlink(absolute.c_str());
      *session.err << "vmctl: qemu-img create " << absolute << " failed"
                   << (rc != 0 ? absl::StrCat(": ", std::strerror(rc),
                                              " (install qemu-utils)")
                               : std::string())
                   << "\n";
      return kExitOther;
    }
  }
  if (session.json) {
    google::protobuf::Struct created;
    (*created.mutable_fields())["path"].set_string_value(absolute);
    (*created.mutable_fields())["format"].set_string_value(format_text);
    (*created.mutable_fields())["sizeBytes"].set_string_value(
        absl::StrCat(size));
    *session.out << FormatJson(created);
  } else {
    *session.out << "created " << absolute << " (" << format_text << ", "
                 << size << " bytes)\n";
  }
  return kExitOk;
}

}  // namespace vmctl
