#include "tests/harness/vmms_instance.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/kvmbox/kvmbox.h"

namespace hvtest {

VmmsInstance::VmmsInstance(std::string state_dir,
                           std::vector<std::string> extra_args)
    : state_dir_(std::move(state_dir)),
      extra_args_(std::move(extra_args)),
      socket_path_(state_dir_ + "/vmms.sock"),
      log_path_(state_dir_ + "/vmms.stderr.log") {}

VmmsInstance::~VmmsInstance() { Kill(); }

absl::Status VmmsInstance::Start() {
  std::vector<std::string> argv = {Runfile("vmms/vmms"), "--state-dir",
                                   state_dir_};
  // The real vmwp unless the test names another worker (e.g. vmwp_testing).
  if (std::find(extra_args_.begin(), extra_args_.end(), "--vmwp") ==
      extra_args_.end()) {
    argv.push_back("--vmwp");
    argv.push_back(Runfile("vmwp/vmwp"));
  }
  // Inside kvmbox the worker itself runs emulated: give it as long as the
  // harness gives everything else.
  if (kvmbox::TimeScale() > 1.0) {
    argv.push_back("--worker-start-timeout");
    argv.push_back(
        absl::StrCat(absl::ToInt64Seconds(kvmbox::Scaled(absl::Seconds(30)))));
    // GetVmStats's wait for the worker's figures (1 s on a host).
    argv.push_back("--worker-stats-timeout");
    argv.push_back(
        absl::StrCat(absl::ToInt64Seconds(kvmbox::Scaled(absl::Seconds(1)))));
  }
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  absl::StatusOr<ChildProcess> child = ChildProcess::Start(argv, log_path_);
  if (!child.ok()) return child.status();
  process_ = std::move(*child);

  const absl::Duration start_limit = kvmbox::Scaled(absl::Seconds(20));
  const absl::Time deadline = absl::Now() + start_limit;
  std::string last_probe = "the socket never appeared";
  while (absl::Now() < deadline) {
    if (!process_.Alive()) {
      return absl::InternalError(
          absl::StrCat("vmms exited during start-up; log:\n", Log()));
    }
    if (access(socket_path_.c_str(), F_OK) == 0) {
      // In kvmbox under load one vmctl process can take longer than 5 s.
      absl::StatusOr<CommandResult> list =
          Vmctl({"list"}, kvmbox::Scaled(absl::Seconds(5)));
      if (list.ok() && list->exit_code == 0) return absl::OkStatus();
      last_probe = list.ok() ? absl::StrCat("vmctl list exited ",
                                            list->exit_code, ": ", list->err)
                             : std::string(list.status().message());
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("vmms did not answer in ", absl::FormatDuration(start_limit),
                   " (last probe: ", last_probe, "); log:\n", Log()));
}

void VmmsInstance::Kill() { process_.Kill(SIGKILL); }

absl::Status VmmsInstance::Terminate() {
  process_.Kill(SIGTERM);
  absl::StatusOr<int> status = process_.Wait(absl::Seconds(15));
  if (!status.ok()) {
    process_.Kill(SIGKILL);
    return status.status();
  }
  return absl::OkStatus();
}

std::string VmmsInstance::Log() const { return ReadFileOrEmpty(log_path_); }

absl::StatusOr<CommandResult> VmmsInstance::Vmctl(
    const std::vector<std::string>& args, absl::Duration timeout) {
  std::vector<std::string> argv = {Runfile("cli/vmctl"), "--socket",
                                   socket_path_};
  // Inside kvmbox a worker's start alone can outlast vmctl's 90 s deadline.
  if (kvmbox::TimeScale() > 1.0) {
    argv.push_back("--request-timeout");
    argv.push_back(
        absl::StrCat(absl::ToInt64Seconds(kvmbox::Scaled(absl::Seconds(90)))));
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, {}, timeout);
}

}  // namespace hvtest
