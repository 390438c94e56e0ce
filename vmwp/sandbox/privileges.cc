#include "vmwp/sandbox/privileges.h"

#include <cap-ng.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace sandbox {
namespace {

absl::Status Errno(const std::string& what) {
  return absl::PermissionDeniedError(
      absl::StrCat("sandbox: ", what, ": ", std::strerror(errno)));
}

absl::Status SetLimit(int resource, const char* name, rlim_t value) {
  struct rlimit limit = {value, value};
  if (::setrlimit(resource, &limit) != 0) {
    return Errno(absl::StrCat("setrlimit ", name, "=", value));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SetResourceLimits(uint64_t max_open_files, uint64_t nproc) {
  if (absl::Status s = SetLimit(RLIMIT_NOFILE, "RLIMIT_NOFILE", max_open_files);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = SetLimit(RLIMIT_CORE, "RLIMIT_CORE", 0); !s.ok()) {
    return s;
  }
  if (nproc == RLIM_INFINITY) return absl::OkStatus();  // left as inherited
  return SetLimit(RLIMIT_NPROC, "RLIMIT_NPROC", nproc);
}

absl::Status DropBoundingAndAmbient() {
  capng_get_caps_process();
  capng_clear(CAPNG_SELECT_BOUNDS);
  // Keep effective/permitted for now: the uid switch below still needs
  // CAP_SETUID/CAP_SETGID.
  if (capng_apply(CAPNG_SELECT_BOUNDS) != 0) {
    return absl::PermissionDeniedError(
        "sandbox: cannot clear the capability bounding set (needs "
        "CAP_SETPCAP)");
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    return Errno("clear ambient capabilities");
  }
  return absl::OkStatus();
}

absl::Status SwitchIdentity(uid_t uid, gid_t gid) {
  if (uid == 0 || gid == 0) {
    return absl::InvalidArgumentError("sandbox: refusing to switch to id 0");
  }
  if (::setgroups(0, nullptr) != 0) return Errno("setgroups({})");
  if (::setresgid(gid, gid, gid) != 0) {
    return Errno(absl::StrCat("setresgid(", gid, ")"));
  }
  if (::setresuid(uid, uid, uid) != 0) {
    return Errno(absl::StrCat("setresuid(", uid, ")"));
  }
  // Verify rather than trust: a failed setresuid must never go unnoticed.
  uid_t r, e, s;
  gid_t rg, eg, sg;
  if (::getresuid(&r, &e, &s) != 0 || ::getresgid(&rg, &eg, &sg) != 0 ||
      r != uid || e != uid || s != uid || rg != gid || eg != gid || sg != gid) {
    return absl::InternalError("sandbox: uid/gid switch did not take");
  }
  return absl::OkStatus();
}

absl::Status DropAllCapabilities() {
  capng_clear(CAPNG_SELECT_BOTH);
  if (capng_apply(CAPNG_SELECT_BOTH) != 0) {
    return absl::PermissionDeniedError("sandbox: cannot clear capabilities");
  }
  capng_get_caps_process();
  if (capng_have_capabilities(CAPNG_SELECT_CAPS) != CAPNG_NONE) {
    return absl::InternalError(
        "sandbox: capabilities remain after dropping them all");
  }
  return absl::OkStatus();
}

absl::Status SetNoNewPrivs() {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return Errno("PR_SET_NO_NEW_PRIVS");
  }
  return absl::OkStatus();
}

}  // namespace sandbox
