#include "vmms/validation.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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
  return ValidateKernelImage(kernel, config.memory_mib());
}

}  // namespace vmms
