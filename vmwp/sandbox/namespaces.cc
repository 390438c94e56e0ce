#include "vmwp/sandbox/namespaces.h"

#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace sandbox {

absl::Status UnshareNamespaces(int flags) {
  if (::unshare(flags) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("sandbox: unshare(0x", absl::Hex(flags),
                     ") failed: ", std::strerror(errno),
                     " (needs CAP_SYS_ADMIN; run the worker as root)"));
  }
  return absl::OkStatus();
}

absl::Status CheckSpawnedInNamespaces() {
  if (::getpid() != 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "sandbox: the worker is pid ", ::getpid(),
        ", not 1 of its own pid namespace; start it with SpawnSandboxed"));
  }
  return absl::OkStatus();
}

}  // namespace sandbox
