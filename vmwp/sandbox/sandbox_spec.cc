#include "vmwp/sandbox/sandbox_spec.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sandbox {

void AddBootFiles(SandboxSpec& spec, const std::string& kernel_path,
                  const std::string& initrd_path) {
  spec.files.push_back({kernel_path, kInsideKernel, false});
  if (!initrd_path.empty()) {
    spec.files.push_back({initrd_path, kInsideInitrd, false});
  }
}

namespace {

bool IsCleanAbsolute(const std::string& path) {
  return absl::StartsWith(path, "/") && !absl::StrContains(path, "/../") &&
         !absl::EndsWith(path, "/..") && path.find('\0') == std::string::npos;
}

}  // namespace

absl::Status ValidateSpec(const SandboxSpec& spec) {
  if (spec.vm_id.empty() || absl::StrContains(spec.vm_id, "/") ||
      spec.vm_id == "." || spec.vm_id == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("sandbox: bad vm id \"", spec.vm_id,
                     "\" (it names a cgroup: no '/', not empty)"));
  }
  if (spec.uid == 0 || spec.gid == 0) {
    return absl::InvalidArgumentError(
        "sandbox: uid/gid 0 would keep root's powers; allocate one with "
        "UidAllocator");
  }
  if (!IsCleanAbsolute(spec.runtime_dir)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sandbox: runtime dir \"", spec.runtime_dir, "\" must be absolute"));
  }
  for (const VmFile& file : spec.files) {
    if (!IsCleanAbsolute(file.host_path)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sandbox: VM file \"", file.host_path, "\" must be absolute"));
    }
    if (!absl::StartsWith(file.inside_path, "/vm/") ||
        !IsCleanAbsolute(file.inside_path)) {
      return absl::InvalidArgumentError(absl::StrCat("sandbox: inside path \"",
                                                     file.inside_path,
                                                     "\" must be under /vm/"));
    }
    if (file.inside_path == kInsideKernel && file.writable) {
      return absl::InvalidArgumentError("sandbox: the kernel is read-only");
    }
  }
  if (spec.max_open_files < 16) {
    return absl::InvalidArgumentError(
        "sandbox: max_open_files below 16 cannot run a worker");
  }
  if (!spec.netns_path.empty() && !spec.has_network) {
    return absl::InvalidArgumentError(
        "sandbox: netns_path given for a VM without network");
  }
  return absl::OkStatus();
}

std::optional<std::string> MapIntoSandbox(const SandboxSpec& spec,
                                          const std::string& host_path) {
  for (const VmFile& file : spec.files) {
    if (file.host_path == host_path) return file.inside_path;
  }
  if (host_path == spec.runtime_dir) return std::string(kInsideRuntimeDir);
  std::string prefix = spec.runtime_dir;
  if (!absl::EndsWith(prefix, "/")) prefix += "/";
  if (absl::StartsWith(host_path, prefix)) {
    return absl::StrCat(kInsideRuntimeDir, "/",
                        host_path.substr(prefix.size()));
  }
  return std::nullopt;
}

}  // namespace sandbox
