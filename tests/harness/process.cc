#include "tests/harness/process.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/kvmbox/kvmbox.h"

extern char** environ;

namespace hvtest {
namespace {

std::vector<char*> ToCharPtrs(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::vector<std::string> MergedEnvironment(
    const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    const std::string key = entry.substr(0, entry.find('=') + 1);
    bool overridden = false;
    for (const auto& x : extra) overridden |= x.rfind(key, 0) == 0;
    if (!overridden) env.push_back(std::move(entry));
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv_in,
                            const std::vector<std::string>& extra_env,
                            const std::string& out_path,
                            const std::string& err_path) {
  std::vector<std::string> argv = argv_in;
  std::vector<std::string> env = MergedEnvironment(extra_env);
  auto argv_ptrs = ToCharPtrs(argv);
  auto env_ptrs = ToCharPtrs(env);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr,
                             argv_ptrs.data(), env_ptrs.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("spawn ", argv[0], ": ", std::strerror(rc)));
  }
  return pid;
}

absl::StatusOr<int> WaitPid(pid_t pid, absl::Duration timeout) {
  // Inside kvmbox everything runs slower (emulated CPU): a bound on another
  // process's progress grows with it.
  timeout = kvmbox::Scaled(timeout);
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0)
      return absl::InternalError(
          absl::StrCat("waitpid: ", std::strerror(errno)));
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("pid ", pid, " still running"));
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
}

}  // namespace

TempDir::TempDir() : TempDir("/tmp") {}

TempDir::TempDir(const std::string& parent) : parent_(parent) {
  std::string tmpl = parent + "/hvt-XXXXXX";
  const char* dir = mkdtemp(tmpl.data());
  path_ = dir != nullptr ? dir : parent;
}

TempDir::~TempDir() {
  std::error_code ignored;
  if (path_ != parent_) std::filesystem::remove_all(path_, ignored);
}

std::string Runfile(const std::string& workspace_relative) {
  const char* srcdir = getenv("TEST_SRCDIR");
  const char* workspace = getenv("TEST_WORKSPACE");
  if (srcdir != nullptr && workspace != nullptr) {
    std::string path =
        absl::StrCat(srcdir, "/", workspace, "/", workspace_relative);
    if (access(path.c_str(), F_OK) == 0) return path;
  }
  // `bazel run` and direct invocations: look beside the binary's runfiles tree.
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    std::string path =
        absl::StrCat(self.string(), ".runfiles/hvstack/", workspace_relative);
    if (access(path.c_str(), F_OK) == 0) return path;
  }
  return workspace_relative;
}

absl::StatusOr<CommandResult> RunCommand(
    const std::vector<std::string>& argv,
    const std::vector<std::string>& extra_env, absl::Duration timeout) {
  TempDir scratch;
  const std::string out_path = scratch.path() + "/out";
  const std::string err_path = scratch.path() + "/err";
  absl::StatusOr<pid_t> pid = Spawn(argv, extra_env, out_path, err_path);
  if (!pid.ok()) return pid.status();
  absl::StatusOr<int> status = WaitPid(*pid, timeout);
  if (!status.ok()) {
    kill(*pid, SIGKILL);
    (void)WaitPid(*pid, absl::Seconds(5));
    return absl::DeadlineExceededError(absl::StrCat(
        argv[0], " did not finish within ", absl::FormatDuration(timeout),
        "; stderr: ", ReadFileOrEmpty(err_path)));
  }
  CommandResult result;
  if (WIFEXITED(*status)) result.exit_code = WEXITSTATUS(*status);
  if (WIFSIGNALED(*status)) result.signal = WTERMSIG(*status);
  result.out = ReadFileOrEmpty(out_path);
  result.err = ReadFileOrEmpty(err_path);
  return result;
}

absl::StatusOr<ChildProcess> ChildProcess::Start(
    const std::vector<std::string>& argv, const std::string& stderr_path,
    const std::vector<std::string>& extra_env) {
  absl::StatusOr<pid_t> pid = Spawn(argv, extra_env, stderr_path, stderr_path);
  if (!pid.ok()) return pid.status();
  ChildProcess child;
  child.pid_ = *pid;
  return child;
}

absl::StatusOr<ChildProcess> ChildProcess::StartWithOutput(
    const std::vector<std::string>& argv, const std::string& stdout_path,
    const std::string& stderr_path, const std::vector<std::string>& extra_env) {
  absl::StatusOr<pid_t> pid = Spawn(argv, extra_env, stdout_path, stderr_path);
  if (!pid.ok()) return pid.status();
  ChildProcess child;
  child.pid_ = *pid;
  return child;
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0) Kill(SIGKILL);
    pid_ = std::exchange(other.pid_, -1);
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) Kill(SIGKILL);
}

bool ChildProcess::Alive() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

void ChildProcess::Kill(int signal) {
  if (pid_ <= 0) return;
  ::kill(pid_, signal);
  if (signal == SIGKILL) {
    (void)WaitPid(pid_, absl::Seconds(10));
    pid_ = -1;
  }
}

absl::StatusOr<int> ChildProcess::Wait(absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("no process");
  absl::StatusOr<int> status = WaitPid(pid_, timeout);
  if (status.ok()) pid_ = -1;
  return status;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::vector<pid_t> ProcessesMentioning(const std::string& needle) {
  std::vector<pid_t> pids;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* entry = readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    std::string cmdline =
        ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/cmdline"));
    std::string stat = ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/stat"));
    size_t paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 2 >= stat.size() ||
        stat[paren + 2] == 'Z') {
      continue;
    }
    for (char& c : cmdline) {
      if (c == '\0') c = ' ';
    }
    if (absl::StrContains(cmdline, needle)) pids.push_back(pid);
  }
  closedir(proc);
  return pids;
}

}  // namespace hvtest
