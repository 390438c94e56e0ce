#ifndef HVSTACK_VMMS_SANDBOX_ZYGOTE_H_
#define HVSTACK_VMMS_SANDBOX_ZYGOTE_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/scoped_fd.h"

namespace sandbox {

// vmms's side of the worker fork server (vmwp/zygote.h): one `vmwp
// --zygote-fd=3` process, started once and kept warm, that turns a spawn
// request into a worker by clone() instead of clone() + execve(): the worker
// skips exec, dynamic loading and relocation of its libraries and their
// first-use initialization. What the worker gets is what SpawnSandboxed gives
// (new namespaces, only the listed descriptors, vmms as its parent), and it
// confines itself the same way. Thread-safe: one request at a time.
class Zygote {
 public:
  // Starts `vmwp_path --zygote-fd=3` as vmms's child (stdin /dev/null,
  // stdout/stderr vmms's). It dies with vmms (PR_SET_PDEATHSIG); workers
  // it made do not.
  static absl::StatusOr<std::unique_ptr<Zygote>> Start(
      const std::string& vmwp_path);
  // Closes the socket (the zygote exits) and reaps it.
  ~Zygote();
  Zygote(const Zygote&) = delete;
  Zygote& operator=(const Zygote&) = delete;

  struct Request {
    std::vector<std::string> argv;  // the worker's command line
    // (descriptor in vmms, number in the worker); vmms keeps its own.
    std::vector<std::pair<int, int>> fds;
    int namespace_flags = 0;  // NamespaceFlags(...)
    int netns_fd = -1;        // joined when set; CLONE_NEWNET is then dropped
  };
  // The new worker's pid (vmms's child). UNAVAILABLE if the zygote is gone
  // (the caller may start another or spawn directly), INTERNAL with the
  // zygote's reason otherwise.
  absl::StatusOr<pid_t> Spawn(const Request& request);

  pid_t pid() const { return pid_; }

 private:
  Zygote(pid_t pid, base::ScopedFd socket)
      : pid_(pid), socket_(std::move(socket)) {}

  const pid_t pid_;
  absl::Mutex mu_;
  base::ScopedFd socket_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sandbox

#endif  // HVSTACK_VMMS_SANDBOX_ZYGOTE_H_
