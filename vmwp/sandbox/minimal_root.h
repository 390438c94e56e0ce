#ifndef HVSTACK_VMWP_SANDBOX_MINIMAL_ROOT_H_
#define HVSTACK_VMWP_SANDBOX_MINIMAL_ROOT_H_

#include "absl/status/status.h"
#include "vmwp/sandbox/sandbox_spec.h"

namespace sandbox {

// Replaces the calling process's root with a read-only tmpfs that holds
// only the VM's files (/vm/...), its runtime dir (/run/vm, read-write),
// /dev/null and /dev/urandom, then pivot_roots into it, detaches the old
// root and chdirs to /. Must run in a mount namespace of its own, as root,
// before the uid switch. Afterwards no host path resolves.
absl::Status BuildMinimalRoot(const SandboxSpec& spec);

}  // namespace sandbox

#endif  // HVSTACK_VMWP_SANDBOX_MINIMAL_ROOT_H_
