#ifndef HVSTACK_VMWP_SANDBOX_PRIVILEGES_H_
#define HVSTACK_VMWP_SANDBOX_PRIVILEGES_H_

#include <sys/types.h>

#include <cstdint>

#include "absl/status/status.h"

namespace sandbox {

// RLIMIT_NOFILE = max_open_files (the worker's descriptors are all opened
// before lock-down, so this bounds a leak), RLIMIT_CORE = 0 (a core would
// hold guest memory), RLIMIT_NPROC = nproc (counted per real uid, so only
// a fence where the uid is the VM's alone on the host; ConfineProcess passes
// RLIM_INFINITY, which leaves it as inherited, because several vmms on one
// host share the uid range).
absl::Status SetResourceLimits(uint64_t max_open_files, uint64_t nproc);

// Drops the capability bounding set and the ambient set. Must run while
// CAP_SETPCAP is still held, i.e. before SwitchIdentity.
absl::Status DropBoundingAndAmbient();

// setgroups({}) + setresgid(gid) + setresuid(uid). The kernel clears the
// permitted and effective sets on leaving uid 0.
absl::Status SwitchIdentity(uid_t uid, gid_t gid);

// Clears every remaining capability set and checks CapEff/CapPrm are empty.
absl::Status DropAllCapabilities();

// PR_SET_NO_NEW_PRIVS: execve can never grant privileges again, and an
// unprivileged process may install seccomp filters.
absl::Status SetNoNewPrivs();

}  // namespace sandbox

#endif  // HVSTACK_VMWP_SANDBOX_PRIVILEGES_H_
