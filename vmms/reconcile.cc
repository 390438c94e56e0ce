#include "vmms/reconcile.h"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <iterator>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "vmms/log_format.h"
#include "vmms/runtime_paths.h"

namespace vmms {
namespace {

std::string ReadProcFile(int64_t pid, const char* name) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/", name), std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

// A zombie still has a /proc entry but is no longer running anything.
bool IsAlive(int64_t pid) {
  std::string stat = ReadProcFile(pid, "stat");
  if (stat.empty()) return false;
  size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() ||
         stat[paren + 2] != 'Z';
}

}  // namespace

bool ProcessMentions(int64_t pid, const std::string& needle) {
  if (pid <= 0 || !IsAlive(pid)) return false;
  std::string cmdline = ReadProcFile(pid, "cmdline");
  for (char& c : cmdline) {
    if (c == '\0') c = ' ';
  }
  return cmdline.find(needle) != std::string::npos;
}

absl::Status ReconcileAfterRestart(VmStore& store,
                                   const std::string& state_dir) {
  absl::StatusOr<std::vector<Vm>> vms = store.List();
  if (!vms.ok()) return vms.status();
  for (const Vm& vm : *vms) {
    if (vm.state() != hvstack::v1::VM_STATE_STARTING &&
        vm.state() != hvstack::v1::VM_STATE_RUNNING &&
        vm.state() != hvstack::v1::VM_STATE_STOPPING) {
      continue;
    }
    const int64_t pid = vm.worker_pid();
    const std::string runtime_dir = RuntimePathsFor(state_dir, vm.uuid()).dir;
    absl::StatusOr<Vm> updated;
    if (ProcessMentions(pid, runtime_dir)) {
      spdlog::warn(
          "VM {}: worker {} from a previous vmms is still running; stopping it",
          vm.name(), pid);
      ::kill(static_cast<pid_t>(pid), SIGKILL);
      // Not our child: we cannot wait for it, only watch it go.
      absl::Time deadline = absl::Now() + absl::Seconds(5);
      while (IsAlive(pid) && absl::Now() < deadline)
        absl::SleepFor(absl::Milliseconds(10));
      updated = store.SetState(vm.uuid(), hvstack::v1::VM_STATE_OFF,
                               "vmms restarted; worker stopped", 0);
    } else {
      spdlog::warn("VM {}: recorded {} but worker {} is gone", vm.name(),
                   StateName(vm.state()), pid);
      updated = store.SetState(vm.uuid(), hvstack::v1::VM_STATE_CRASHED,
                               absl::StrCat("vmms restarted; worker ", pid,
                                            " was no longer running"),
                               0);
    }
    if (!updated.ok()) return updated.status();
  }
  return absl::OkStatus();
}

}  // namespace vmms
