#ifndef HVSTACK_VMWP_SANDBOX_SANDBOX_SPEC_H_
#define HVSTACK_VMWP_SANDBOX_SANDBOX_SPEC_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace sandbox {

// Fixed paths inside the worker's root. vmwp opens its files by these names
// after BuildMinimalRoot; MapIntoSandbox translates a host path.
inline constexpr char kInsideKernel[] = "/vm/kernel";
inline constexpr char kInsideInitrd[] = "/vm/initrd";
inline constexpr char kInsideDiskDir[] = "/vm/disks";
inline constexpr char kInsideRuntimeDir[] = "/run/vm";

// One file of the VM, bind-mounted into the root.
struct VmFile {
  std::string host_path;    // absolute, must exist
  std::string inside_path;  // absolute, under /vm
  bool writable = false;    // disks may be; kernel and initrd never are
};

// Everything the confinement steps need to know about one VM's worker.
struct SandboxSpec {
  std::string vm_id;  // the VM's uuid: names the cgroup
  uid_t uid = 0;      // from UidAllocator; never 0, never a real account
  gid_t gid = 0;
  std::vector<VmFile> files;  // kernel, initrd, disks
  std::string runtime_dir;    // host path; bind-mounted read-write
  // The net namespace is always new. A VM without network gets it empty;
  // with network, `netns_path` names a namespace vmms prepared (holding the
  // VM's tap device, Firecracker-jailer style) that the worker joins instead.
  bool has_network = false;
  std::string netns_path;
  uint64_t max_open_files = 256;  // RLIMIT_NOFILE
};

// Adds the kernel (and initrd, if non-empty) at their fixed inside paths.
void AddBootFiles(SandboxSpec& spec, const std::string& kernel_path,
                  const std::string& initrd_path);

// Checks the spec before anything is changed: non-root ids, absolute paths,
// inside paths under /vm, a runtime dir, a sane RLIMIT_NOFILE.
absl::Status ValidateSpec(const SandboxSpec& spec);

// The path vmwp must use inside the sandbox for a host path the spec
// mentions (a VM file, or anything under the runtime dir); nullopt if the
// path is not visible inside.
std::optional<std::string> MapIntoSandbox(const SandboxSpec& spec,
                                          const std::string& host_path);

}  // namespace sandbox

#endif  // HVSTACK_VMWP_SANDBOX_SANDBOX_SPEC_H_
