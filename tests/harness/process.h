#ifndef HVSTACK_TESTS_HARNESS_PROCESS_H_
#define HVSTACK_TESTS_HARNESS_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace hvtest {

// A directory under /tmp with a short path (unix socket paths must stay under
// 108 bytes, which Bazel's TEST_TMPDIR does not), removed with its contents on
// destruction.
class TempDir {
 public:
  TempDir();
  // Under `parent` instead of /tmp.
  explicit TempDir(const std::string& parent);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string parent_;
  std::string path_;
};

// Resolves a file from this test's runfiles, e.g. "vmms/vmms" or
// "guest/hello.elf".
std::string Runfile(const std::string& workspace_relative);

struct CommandResult {
  int exit_code = -1;  // -1 if killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
};

// Runs a program to completion with extra environment entries ("K=V"),
// capturing its output. Fails if it has not finished within `timeout` (it is
// then killed).
absl::StatusOr<CommandResult> RunCommand(
    const std::vector<std::string>& argv,
    const std::vector<std::string>& extra_env = {},
    absl::Duration timeout = absl::Seconds(60));

// A child process started in the background; SIGKILLed and reaped on
// destruction if still alive.
class ChildProcess {
 public:
  static absl::StatusOr<ChildProcess> Start(
      const std::vector<std::string>& argv, const std::string& stderr_path,
      const std::vector<std::string>& extra_env = {});
  // The same with stdout and stderr in files of their own.
  static absl::StatusOr<ChildProcess> StartWithOutput(
      const std::vector<std::string>& argv, const std::string& stdout_path,
      const std::string& stderr_path,
      const std::vector<std::string>& extra_env = {});
  ChildProcess() = default;
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  bool Alive();
  void Kill(int signal);
  // Waits for exit; returns the raw wait status, or an error on timeout.
  absl::StatusOr<int> Wait(absl::Duration timeout);

 private:
  pid_t pid_ = -1;
};

// Reads a whole file; empty string if it does not exist.
std::string ReadFileOrEmpty(const std::string& path);

// Live (non-zombie) processes whose command line contains `needle`.
std::vector<pid_t> ProcessesMentioning(const std::string& needle);

}  // namespace hvtest

#endif  // HVSTACK_TESTS_HARNESS_PROCESS_H_
