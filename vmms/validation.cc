#include "vmms/validation.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/scoped_fd.h"
#include "kernel_probe/guest_layout.h"
#include "vmms/kernel_image.h"

namespace vmms {
namespace {

bool IsLowerAlnum(char c) {
  return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'z');
}

// Longest path vmms accepts (PATH_MAX includes the NUL).
constexpr size_t kMaxPathBytes = PATH_MAX - 1;

absl::Status CheckPathLength(absl::string_view field, const std::string& path) {
  if (path.size() <= kMaxPathBytes) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, " ", Quoted(path), " is too long: a path is at most ",
                   kMaxPathBytes, " bytes"));
}

}  // namespace

std::string Quoted(absl::string_view value) {
  constexpr size_t kShown = 96;
  if (value.size() <= kShown)
    return absl::StrCat("'", absl::CHexEscape(value), "'");
  return absl::StrCat("'", absl::CHexEscape(value.substr(0, kShown)), "...' (",
                      value.size(), " bytes)");
}

absl::Status ValidateVmName(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 63 && IsLowerAlnum(name.front()) &&
            IsLowerAlnum(name.back());
  for (char c : name) ok = ok && (IsLowerAlnum(c) || c == '-');
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "name %s is invalid: a VM name must be 1-63 characters of [a-z0-9-], "
      "starting and ending "
      "with a letter or digit",
      Quoted(name)));
}

namespace {

// The fields that say what vmms does with a VM, not what the VM is: they may
// change in any state.
bool IsPolicyField(const std::string& path) {
  return path == "autostart" || path == "restart_policy" ||
         path == "on_guest_crash";
}

absl::Status ValidatePolicies(const hvstack::v1::VmConfig& config) {
  if (!hvstack::v1::RestartPolicy_IsValid(config.restart_policy())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "config.restart_policy %d is not a RestartPolicy (never = 1, "
        "on-failure = 2, always = 3)",
        static_cast<int>(config.restart_policy())));
  }
  if (!hvstack::v1::GuestCrashPolicy_IsValid(config.on_guest_crash())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "config.on_guest_crash %d is not a GuestCrashPolicy (stop = 1, "
        "restart = 2, preserve = 3)",
        static_cast<int>(config.on_guest_crash())));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateVmConfig(const hvstack::v1::VmConfig& config) {
  if (absl::Status s = ValidatePolicies(config); !s.ok()) return s;
  if (!hvstack::v1::Backend_IsValid(config.backend())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "config.backend %d is not a Backend (hvstack = 1, libvirt = 2)",
        static_cast<int>(config.backend())));
  }
  if (!hvstack::v1::LibvirtOptions::Accelerator_IsValid(
          config.libvirt().accelerator())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "config.libvirt.accelerator %d is not an Accelerator (kvm = 1, tcg = "
        "2)",
        static_cast<int>(config.libvirt().accelerator())));
  }
  if (config.vcpus() < kMinVcpus || config.vcpus() > kMaxVcpus) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "config.vcpus %u is out of range: must be between %u and %u",
        config.vcpus(), kMinVcpus, kMaxVcpus));
  }
  if (config.memory_mib() < kMinMemoryMib ||
      config.memory_mib() > kMaxMemoryMib) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "config.memory_mib %u is out of range: must be between %u and %u MiB",
        config.memory_mib(), kMinMemoryMib, kMaxMemoryMib));
  }
  if (config.cmdline().size() > kernel_probe::kMaxCmdlineBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.cmdline is ", config.cmdline().size(),
        " bytes; the x86 boot protocol takes at most ",
        kernel_probe::kMaxCmdlineBytes, " (a kernel may declare less)"));
  }
  if (size_t nul = config.cmdline().find('\0'); nul != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.cmdline has a NUL byte at offset ", nul,
                     ": the command line is a C string"));
  }
  const std::string& kernel = config.kernel_path();
  if (absl::Status s = CheckPathLength("config.kernel_path", kernel); !s.ok())
    return s;
  if (kernel.empty()) {
    return absl::InvalidArgumentError(
        "config.kernel_path is empty: a kernel image is required");
  }
  if (kernel.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("config.kernel_path ", Quoted(kernel),
                     " is not an absolute path (vmms does not share the "
                     "client's working directory)"));
  }
  if (absl::Status s = ValidateKernelImage(kernel, config.memory_mib());
      !s.ok()) {
    return s;
  }
  return ValidateInitrd(config);
}

absl::Status ValidateInitrd(const hvstack::v1::VmConfig& config) {
  const std::string& path = config.initrd_path();
  if (path.empty()) return absl::OkStatus();
  if (absl::Status s = CheckPathLength("config.initrd_path", path); !s.ok())
    return s;
  auto invalid = [&](absl::string_view problem) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.initrd_path ", Quoted(path), " ", problem));
  };
  if (path.front() != '/') {
    return invalid(
        "is not an absolute path (vmms does not share the client's working "
        "directory)");
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return invalid(absl::StrCat("cannot be used: ", std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) return invalid("is not a regular file");
  base::ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return invalid(absl::StrCat("cannot be read: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<hvstack::v1::VmConfig> ApplyConfigUpdate(
    const hvstack::v1::VmConfig& current, const hvstack::v1::VmConfig& update,
    const std::vector<std::string>& mask) {
  if (mask.empty()) {
    return absl::InvalidArgumentError(
        "update_mask is empty: name the fields to change, e.g. memory_mib");
  }
  hvstack::v1::VmConfig merged = current;
  std::vector<std::string> seen;
  for (const std::string& path : mask) {
    if (std::find(seen.begin(), seen.end(), path) != seen.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("update_mask names ", Quoted(path), " twice"));
    }
    seen.push_back(path);
    if (path == "vcpus") {
      merged.set_vcpus(update.vcpus());
    } else if (path == "memory_mib") {
      merged.set_memory_mib(update.memory_mib());
    } else if (path == "kernel_path") {
      merged.set_kernel_path(update.kernel_path());
    } else if (path == "cmdline") {
      merged.set_cmdline(update.cmdline());
    } else if (path == "initrd_path") {
      merged.set_initrd_path(update.initrd_path());
    } else if (path == "autostart") {
      merged.set_autostart(update.autostart());
    } else if (path == "restart_policy") {
      merged.set_restart_policy(update.restart_policy());
    } else if (path == "on_guest_crash") {
      merged.set_on_guest_crash(update.on_guest_crash());
    } else if (path == "disable_enlightenments") {
      merged.set_disable_enlightenments(update.disable_enlightenments());
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "update_mask: ", Quoted(path),
          " is not an updatable field (vcpus, memory_mib, kernel_path, "
          "cmdline, initrd_path, autostart, restart_policy, "
          "disable_enlightenments, on_guest_crash)"));
    }
  }
  const bool hardware = std::any_of(seen.begin(), seen.end(),
                                    [](auto& p) { return !IsPolicyField(p); });
  // Policy-only updates do not re-check the kernel: switching autostart off
  // must work even if the image has gone.
  if (hardware) {
    if (absl::Status s = ValidateVmConfig(merged); !s.ok()) return s;
  } else if (absl::Status s = ValidatePolicies(merged); !s.ok()) {
    return s;
  }
  return merged;
}

absl::StatusOr<absl::Duration> ValidateShutdownTimeout(bool has_timeout,
                                                       int64_t seconds,
                                                       int32_t nanos) {
  if (!has_timeout) return absl::Seconds(60);
  const absl::Duration timeout =
      absl::Seconds(seconds) + absl::Nanoseconds(nanos);
  if (seconds < 0 || nanos < 0 || nanos >= 1000000000 ||
      timeout < absl::Milliseconds(1) || timeout > absl::Hours(1)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "timeout %ds %dns is out of range: give 1 ms to 1 h (or leave it "
        "unset for 60 s)",
        seconds, nanos));
  }
  return timeout;
}

namespace {

// UTF-16 code units of UTF-8 text: one per character, two for those beyond
// the BMP (4-byte sequences).
size_t Utf16Units(absl::string_view utf8) {
  size_t units = 0;
  for (unsigned char c : utf8) {
    if ((c & 0xC0) != 0x80) ++units;
    if (c >= 0xF0) ++units;
  }
  return units;
}

}  // namespace

absl::Status ValidateKvpSizes(absl::string_view key, absl::string_view value) {
  // hv_kvp_exchange_msg_value: 512-byte key and 2048-byte value fields, UTF-16
  // with the NUL. The worker checks again, exactly; this answers before the
  // VM's state or the guest is consulted.
  constexpr size_t kMaxKeyUnits = 512 / 2 - 1;
  constexpr size_t kMaxValueUnits = 2048 / 2 - 1;
  if (Utf16Units(key) > kMaxKeyUnits) {
    return absl::InvalidArgumentError(
        absl::StrCat("key ", Quoted(key), " is too long: a KVP key is at most ",
                     kMaxKeyUnits, " UTF-16 characters"));
  }
  if (Utf16Units(value) > kMaxValueUnits) {
    return absl::InvalidArgumentError(
        absl::StrCat("value of ", value.size(),
                     " bytes is too long: a KVP value is at most ",
                     kMaxValueUnits, " UTF-16 characters"));
  }
  return absl::OkStatus();
}

}  // namespace vmms
