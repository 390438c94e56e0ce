#include "vmwp/thread_stacks.h"

#include <pthread.h>

#include <cerrno>

namespace vmwp {

absl::Status LimitDefaultThreadStacks() {
  pthread_attr_t attr;
  if (int rc = ::pthread_getattr_default_np(&attr); rc != 0) {
    return absl::ErrnoToStatus(rc, "pthread_getattr_default_np");
  }
  int rc = ::pthread_attr_setstacksize(&attr, kWorkerThreadStackBytes);
  if (rc == 0) rc = ::pthread_setattr_default_np(&attr);
  ::pthread_attr_destroy(&attr);
  if (rc != 0) return absl::ErrnoToStatus(rc, "default thread stack size");
  return absl::OkStatus();
}

}  // namespace vmwp
