#include "vmwp/sandbox/testing/forbidden_syscall.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace sandbox::testing {

absl::Status TriggerForbiddenSyscall(absl::string_view which) {
  long rc;
  if (which == "openat") {
    // Raw: glibc's open() is openat today, but the test must not depend
    // on which one it picks.
    rc = ::syscall(SYS_openat, AT_FDCWD, "/etc/passwd", O_RDONLY | O_CLOEXEC);
  } else if (which == "execve") {
    char* const argv[] = {const_cast<char*>("/bin/sh"), nullptr};
    char* const envp[] = {nullptr};
    rc = ::syscall(SYS_execve, "/bin/sh", argv, envp);
  } else if (which == "socket") {
    rc = ::syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
  } else if (which == "accept4") {
    rc = ::syscall(SYS_accept4, -1, nullptr, nullptr, 0);
  } else if (which == "ioctl") {
    rc = ::syscall(SYS_ioctl, 0, KVM_CREATE_VM, 0);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown forbidden call \"", std::string(which), "\""));
  }
  return absl::InternalError(absl::StrCat(
      std::string(which), " was not stopped by the sandbox: returned ", rc,
      rc < 0 ? absl::StrCat(" (", std::strerror(errno), ")") : ""));
}

}  // namespace sandbox::testing
