#ifndef HVSTACK_VMMS_SANDBOX_ZYGOTE_H_
#define HVSTACK_VMMS_SANDBOX_ZYGOTE_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
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
  // stdout/stderr vmms's). It exits when its socket closes (this object goes,
  // or vmms dies); workers it made do not.
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

  // OK while the zygote runs; UNAVAILABLE naming how it ended once it has
  // (it is reaped then).
  absl::Status CheckAlive();

  // Sends `bytes` and `fds` as a request as is and returns the zygote's
  // error text (empty if it made a worker); for tests of malformed requests.
  absl::StatusOr<std::string> RawRequestForTesting(std::string_view bytes,
                                                   absl::Span<const int> fds);

  pid_t pid() const { return pid_; }
  // Workers this zygote has made.
  int spawned() const;

 private:
  Zygote(pid_t pid, base::ScopedFd socket)
      : pid_(pid), socket_(std::move(socket)) {}
  absl::StatusOr<std::string> Exchange(std::string_view bytes,
                                       absl::Span<const int> fds, int32_t* pid)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const pid_t pid_;
  mutable absl::Mutex mu_;
  base::ScopedFd socket_ ABSL_GUARDED_BY(mu_);
  bool reaped_ ABSL_GUARDED_BY(mu_) = false;
  std::string end_ ABSL_GUARDED_BY(mu_);  // how it ended, once reaped
  int spawned_ ABSL_GUARDED_BY(mu_) = 0;
};

// vmms's policy around one Zygote: started at vmms start-up (Start), and
// after it dies restarted on the next spawn with a log line naming how it
// ended; a zygote that ends before it made a single worker (a vmwp that
// cannot serve) turns the fork server off for good, with a log line, and
// every worker is exec'd. Thread-safe.
class ZygoteKeeper {
 public:
  explicit ZygoteKeeper(std::string vmwp_path)
      : vmwp_path_(std::move(vmwp_path)) {}
  ZygoteKeeper(const ZygoteKeeper&) = delete;
  ZygoteKeeper& operator=(const ZygoteKeeper&) = delete;

  // Starts the zygote now (vmms start-up), so the first start is warm too.
  absl::Status Start();
  // A worker from the zygote, (re)started first if needed. UNAVAILABLE: no
  // zygote (gone mid-request, or turned off): the caller execs this worker.
  // Other errors: the zygote refused or could not clone (its reason).
  absl::StatusOr<pid_t> Spawn(const Zygote::Request& request);

  // Zygotes started after the first (deaths recovered from).
  int restarts() const;
  // Why the fork server is off for good; empty while it is in use.
  std::string disabled() const;
  // The current zygote's pid, 0 without one.
  pid_t pid() const;

 private:
  absl::Status StartLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops a zygote that has ended (logs how; turns the fork server off if it
  // never made a worker).
  void ForgetDeadLocked(const absl::Status& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string vmwp_path_;
  mutable absl::Mutex mu_;
  std::unique_ptr<Zygote> zygote_ ABSL_GUARDED_BY(mu_);
  int started_ ABSL_GUARDED_BY(mu_) = 0;
  std::string disabled_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sandbox

#endif  // HVSTACK_VMMS_SANDBOX_ZYGOTE_H_
