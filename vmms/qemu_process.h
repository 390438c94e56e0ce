#ifndef HVSTACK_VMMS_QEMU_PROCESS_H_
#define HVSTACK_VMMS_QEMU_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/scoped_fd.h"

namespace vmms {

// QEMU's tools as vmms uses them for disk images (qemu-img, qemu-nbd from
// Debian's qemu-utils): a well-kept implementation of qcow2 and VHDX instead
// of a parser of our own. They parse image files a VM could have written,
// so they run confined (see SpawnConfinedTool).

// The tool's absolute path: $HVSTACK_QEMU_IMG / $HVSTACK_QEMU_NBD, else the
// first `name` on PATH, else /usr/bin/<name>. FAILED_PRECONDITION naming the
// package when it is missing.
absl::StatusOr<std::string> LocateQemuTool(const std::string& name);

struct ToolSpawn {
  std::vector<std::string> argv;  // argv[0] is the absolute binary path.
  // The complete environment (nothing of vmms's is inherited).
  std::vector<std::string> env;
  // (descriptor in vmms, number in the tool); 0 is /dev/null unless mapped,
  // every other descriptor not listed is closed.
  std::vector<std::pair<int, int>> fds;
  // Set LISTEN_PID to the child's pid (systemd socket activation).
  bool socket_activation = false;
  // New ipc and uts namespaces.
  bool new_namespaces = false;
};

// fork + confinement + execve. The child: its own session; stdin /dev/null;
// the listed descriptors only; PR_SET_NO_NEW_PRIVS; every capability but
// CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped from the bounding set
// (vmms is root, so the tool keeps root's file access to open the image and
// nothing else: no mounts, no ptrace, no raw I/O, no setuid); optionally new
// ipc/uts namespaces. Not a new net namespace: creating one per disk cost 31 s
// in the nested test VM (kvmbox) and is what the workers' pool exists for.
// Returns its pid (our child: the caller reaps it).
absl::StatusOr<pid_t> SpawnConfinedTool(const ToolSpawn& spawn);

struct ToolResult {
  int wait_status = 0;
  std::string out;
  std::string err;
};
// Runs a tool confined and collects its output (each stream
// capped at 1 MiB); DEADLINE_EXCEEDED (it is killed) after `timeout`.
absl::StatusOr<ToolResult> RunConfinedTool(const std::vector<std::string>& argv,
                                           absl::Duration timeout);

}  // namespace vmms

#endif  // HVSTACK_VMMS_QEMU_PROCESS_H_
