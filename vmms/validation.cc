#include "vmms/validation.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/scoped_fd.h"
#include "vmms/kernel_image.h"

namespace vmms {
namespace {

bool IsLowerAlnum(char c) {
  return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'z');
}

}  // namespace

absl::Status ValidateVmName(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 63 && IsLowerAlnum(name.front()) &&
            IsLowerAlnum(name.back());
  for (char c : name) ok = ok && (IsLowerAlnum(c) || c == '-');
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "name %s is invalid: a VM name must be 1-63 characters of [a-z0-9-], "
      "starting and ending "
      "with a letter or digit",
      name.empty() ? "''" : absl::StrCat("'", absl::CHexEscape(name), "'")));
}

absl::Status ValidateVmConfig(const hvstack::v1::VmConfig& config) {
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
  const std::string& kernel = config.kernel_path();
  if (kernel.empty()) {
    return absl::InvalidArgumentError(
        "config.kernel_path is empty: a kernel image is required");
  }
  if (kernel.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("config.kernel_path '", kernel,
                     "' is not an absolute path (vmms does not share the "
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
  auto invalid = [&](absl::string_view problem) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.initrd_path '", path, "' ", problem));
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

}  // namespace vmms
