#ifndef HVSTACK_TESTS_HARNESS_VMMS_INSTANCE_H_
#define HVSTACK_TESTS_HARNESS_VMMS_INSTANCE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/harness/process.h"

namespace hvtest {

// A real vmms process on its own state directory, driven through the real vmctl
// binary. Binaries come from runfiles: tests list //vmms:vmms, //vmwp:vmwp and
// //cli:vmctl as data.
class VmmsInstance {
 public:
  // `state_dir` must outlive the instance; `extra_args` go to vmms (with
  // "--vmwp PATH" among them, that worker replaces the real vmwp).
  explicit VmmsInstance(std::string state_dir,
                        std::vector<std::string> extra_args = {});
  ~VmmsInstance();

  // Starts vmms and waits until its socket answers `vmctl list`.
  absl::Status Start();
  // SIGKILL, as a crash would.
  void Kill();
  // SIGTERM and wait.
  absl::Status Terminate();
  pid_t pid() const { return process_.pid(); }

  const std::string& socket_path() const { return socket_path_; }
  const std::string& state_dir() const { return state_dir_; }
  // vmms's own log so far.
  std::string Log() const;

  // Runs `vmctl --socket <this> args...`.
  absl::StatusOr<CommandResult> Vmctl(
      const std::vector<std::string>& args,
      absl::Duration timeout = absl::Seconds(60));

 private:
  std::string state_dir_;
  std::vector<std::string> extra_args_;
  std::string socket_path_;
  std::string log_path_;
  ChildProcess process_;
};

}  // namespace hvtest

#endif  // HVSTACK_TESTS_HARNESS_VMMS_INSTANCE_H_
