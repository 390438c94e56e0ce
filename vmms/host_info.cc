#include "vmms/host_info.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/scoped_fd.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "vmms/validation.h"
#include "vmms/vmwp_locator.h"

extern char** environ;

namespace vmms {
namespace {

constexpr absl::Duration kProbeTimeout = absl::Seconds(10);

// Runs `argv` with stdout into a pipe; returns what it wrote, or an error
// with its stderr left to ours (vmms's log).
absl::StatusOr<std::string> RunAndRead(std::vector<std::string> argv) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  base::ScopedFd read_end(fds[0]), write_end(fds[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot run ", argv[0], ": ", std::strerror(rc)));
  }
  write_end.reset();
  std::string out;
  const absl::Time deadline = absl::Now() + kProbeTimeout;
  bool timed_out = false;
  while (true) {
    pollfd p{read_end.get(), POLLIN, 0};
    int left =
        static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (left <= 0 || ::poll(&p, 1, left) == 0) {
      timed_out = true;
      break;
    }
    char buf[4096];
    ssize_t n = ::read(read_end.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return absl::UnavailableError(
        absl::StrCat(argv[0], " --host-info did not answer within ",
                     absl::FormatDuration(kProbeTimeout)));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::UnavailableError(
        absl::StrCat(argv[0], " --host-info failed (status ", status,
                     "; its message is in vmms's log)"));
  }
  return out;
}

}  // namespace

absl::StatusOr<hvstack::v1::HostInfo> HostInfoProvider::ProbeKvm() {
  absl::StatusOr<std::string> vmwp = LocateVmwp(vmwp_flag_);
  if (!vmwp.ok()) return vmwp.status();
  absl::StatusOr<std::string> out = RunAndRead(
      {*vmwp, "--host-info", absl::StrCat("--kvm-device=", kvm_device_)});
  if (!out.ok()) {
    return absl::Status(
        out.status().code(),
        absl::StrCat("cannot read the host's KVM (", kvm_device_,
                     "): ", out.status().message()));
  }
  hvstack::internal::HostKvmInfo kvm;
  if (!kvm.ParseFromString(*out)) {
    return absl::InternalError(
        absl::StrCat(*vmwp, " --host-info wrote no HostKvmInfo"));
  }
  hvstack::v1::HostInfo info;
  info.set_kvm_api_version(kvm.api_version());
  info.set_max_vcpus(kvm.max_vcpus());
  info.set_recommended_vcpus(kvm.recommended_vcpus());
  info.set_max_memory_slots(kvm.max_memory_slots());
  info.mutable_kvm_capabilities()->insert(kvm.capabilities().begin(),
                                          kvm.capabilities().end());
  info.set_kvm_module(kvm.module());
  return info;
}

absl::StatusOr<hvstack::v1::HostInfo> HostInfoProvider::Get() {
  hvstack::v1::HostInfo info;
  {
    absl::MutexLock lock(&mu_);
    if (!kvm_.has_value()) {
      absl::StatusOr<hvstack::v1::HostInfo> probed = ProbeKvm();
      if (!probed.ok()) return probed.status();
      kvm_ = *probed;
    }
    info = *kvm_;
  }
  info.set_host_cpus(static_cast<uint32_t>(sysconf(_SC_NPROCESSORS_ONLN)));
  info.set_host_memory_bytes(static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                             static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
  utsname u{};
  if (uname(&u) == 0)
    info.set_host_kernel(
        absl::StrCat(u.sysname, " ", u.release, " ", u.machine));
  info.set_vm_max_vcpus(kMaxVcpus);
  info.set_vm_max_memory_mib(kMaxMemoryMib);
  return info;
}

}  // namespace vmms
