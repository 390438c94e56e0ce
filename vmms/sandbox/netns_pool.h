#ifndef HVSTACK_VMMS_SANDBOX_NETNS_POOL_H_
#define HVSTACK_VMMS_SANDBOX_NETNS_POOL_H_

#include <cstddef>
#include <deque>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/scoped_fd.h"

namespace sandbox {

// Creating a net namespace is the one expensive step of a sandboxed start:
// a few ms on a quiet host, 10+ ms when the host is busy (the kernel's
// per-namespace setup). vmms keeps a few empty namespaces ready, made by a
// background thread, and hands one to each SpawnSandboxed
// (SpawnRequest::netns_fd). A namespace is used by one worker only, never
// returned: a fresh one is guaranteed empty.
class NetNamespacePool {
 public:
  explicit NetNamespacePool(size_t target_size);
  ~NetNamespacePool();
  NetNamespacePool(const NetNamespacePool&) = delete;
  NetNamespacePool& operator=(const NetNamespacePool&) = delete;

  // An empty net namespace: from the pool, or created now if it is empty.
  absl::StatusOr<base::ScopedFd> Take();

  // Creates one on a short-lived thread (unshare(CLONE_NEWNET) affects only
  // that thread) and returns a descriptor that keeps it alive.
  static absl::StatusOr<base::ScopedFd> CreateEmpty();

 private:
  void Refill();

  const size_t target_size_;
  absl::Mutex mu_;
  std::deque<base::ScopedFd> ready_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread refill_thread_;
};

}  // namespace sandbox

#endif  // HVSTACK_VMMS_SANDBOX_NETNS_POOL_H_
