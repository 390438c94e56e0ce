#include "vmms/sandbox/netns_pool.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace sandbox {

absl::StatusOr<base::ScopedFd> NetNamespacePool::CreateEmpty() {
  int fd = -1;
  int error = 0;
  std::thread maker([&fd, &error] {
    if (::unshare(CLONE_NEWNET) != 0) {
      error = errno;
      return;
    }
    fd = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) error = errno;
    // The thread ends here; its namespace lives on through `fd`.
  });
  maker.join();
  if (fd < 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "sandbox: cannot create a net namespace: ", std::strerror(error),
        " (vmms needs CAP_SYS_ADMIN)"));
  }
  return base::ScopedFd(fd);
}

NetNamespacePool::NetNamespacePool(size_t target_size)
    : target_size_(target_size) {
  refill_thread_ = std::thread([this] { Refill(); });
}

NetNamespacePool::~NetNamespacePool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  refill_thread_.join();
}

absl::StatusOr<base::ScopedFd> NetNamespacePool::Take() {
  {
    absl::MutexLock lock(&mu_);
    if (!ready_.empty()) {
      base::ScopedFd fd = std::move(ready_.front());
      ready_.pop_front();
      return fd;
    }
  }
  return CreateEmpty();
}

void NetNamespacePool::Refill() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto wanted = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || ready_.size() < target_size_;
      };
      mu_.Await(absl::Condition(&wanted));
      if (stopping_) return;
    }
    absl::StatusOr<base::ScopedFd> fd = CreateEmpty();
    if (!fd.ok()) {
      // Take() will report the same error on the start path.
      spdlog::warn("{}", std::string(fd.status().message()));
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Seconds(5));
      if (stopping_) return;
      continue;
    }
    absl::MutexLock lock(&mu_);
    ready_.push_back(*std::move(fd));
  }
}

}  // namespace sandbox
