#ifndef HVSTACK_VMWP_VSP_STORAGE_TEST_REFUSED_URING_H_
#define HVSTACK_VMWP_VSP_STORAGE_TEST_REFUSED_URING_H_

#include <seccomp.h>

#include <cerrno>

namespace vsp::storage {

// Makes every io_uring_enter of the calling thread (only: no TSYNC) fail with
// EBUSY, as a kernel that refuses submissions would. False if the filter could
// not be loaded.
inline bool RefuseIoUringEnterOnThisThread() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) return false;
  const bool loaded = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EBUSY),
                                       SCMP_SYS(io_uring_enter), 0) == 0 &&
                      seccomp_load(ctx) == 0;
  seccomp_release(ctx);
  return loaded;
}

}  // namespace vsp::storage

#endif  // HVSTACK_VMWP_VSP_STORAGE_TEST_REFUSED_URING_H_
