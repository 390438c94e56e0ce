#ifndef HVSTACK_VMWP_SANDBOX_NAMESPACES_H_
#define HVSTACK_VMWP_SANDBOX_NAMESPACES_H_

#include "absl/status/status.h"

namespace sandbox {

// unshare(2)s `flags` for the calling process. A new pid namespace applies
// to children only; SpawnSandboxed is the way to get one (see README).
absl::Status UnshareNamespaces(int flags);

// Fails unless the process is pid 1 of a pid namespace of its own and its
// mount namespace differs from its parent's view: Confine's guard against a
// worker started by something other than SpawnSandboxed.
absl::Status CheckSpawnedInNamespaces();

}  // namespace sandbox

#endif  // HVSTACK_VMWP_SANDBOX_NAMESPACES_H_
