#include "tests/sandbox/probe_launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "vmms/sandbox/spawn.h"
#include "vmms/sandbox/uid_allocator.h"

namespace sandbox::testing {
namespace {

std::atomic<uint32_t> g_counter{0};

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

absl::StatusOr<Identity> PickIdentity() {
  absl::StatusOr<UidAllocator> allocator = UidAllocator::Create();
  if (!allocator.ok()) return allocator.status();
  // Distinct per process and per run, so parallel tests never share a uid.
  uint32_t start = (static_cast<uint32_t>(::getpid()) * 64 + g_counter++) %
                   allocator->count();
  for (uint32_t i = 0; i < 16; ++i) {
    absl::StatusOr<Identity> id =
        allocator->ForSlot((start + i) % allocator->count());
    if (id.ok()) return id;
  }
  return absl::ResourceExhaustedError("no free VM uid near the start slot");
}

}  // namespace

std::string ProbePath() {
  if (const char* env = std::getenv("HVSTACK_SANDBOX_PROBE")) return env;
  return std::filesystem::absolute("tests/sandbox/sandbox_probe").string();
}

absl::StatusOr<std::unique_ptr<ProbeRun>> ProbeRun::Start(
    const ProbeOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<ProbeRun> run(new ProbeRun());
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string templ = absl::StrCat(tmp ? tmp : "/tmp", "/sandbox-probe-XXXXXX");
  if (::mkdtemp(templ.data()) == nullptr) return Errno("mkdtemp");
  run->temp_dir_ = templ;
  // The probe's root is built from these; the temp dir itself stays
  // invisible inside.
  ::chmod(templ.c_str(), 0755);
  std::ofstream(templ + "/kernel") << "fake-kernel";
  std::ofstream(templ + "/initrd") << "fake-initrd";
  // World-writable on purpose: only the read-only bind may stop a write.
  ::chmod((templ + "/kernel").c_str(), 0666);
  std::string runtime = templ + "/run";
  if (::mkdir(runtime.c_str(), 0700) != 0) return Errno("mkdir runtime");

  SandboxSpec& spec = run->spec_;
  spec.vm_id = absl::StrCat("probe-", ::getpid(), "-", g_counter++);
  spec.runtime_dir = runtime;
  AddBootFiles(spec, templ + "/kernel", templ + "/initrd");
  run->limits_ = LimitsForVm(64ull << 20, 1);
  absl::StatusOr<Identity> id = PickIdentity();
  if (!id.ok()) return id.status();
  spec.uid = id->uid;
  spec.gid = id->gid;
  // vmms's job: the runtime dir belongs to the VM's uid, nothing else does.
  if (::chown(runtime.c_str(), spec.uid, spec.gid) != 0) {
    return Errno("chown runtime");
  }

  int report[2], control[2], violation[2];
  if (::pipe2(report, O_CLOEXEC) != 0 || ::pipe2(control, O_CLOEXEC) != 0 ||
      ::pipe2(violation, O_CLOEXEC) != 0) {
    return Errno("pipe2");
  }
  run->report_read_.reset(report[0]);
  base::ScopedFd report_write(report[1]);
  base::ScopedFd control_read(control[0]);
  run->control_write_.reset(control[1]);
  run->violation_read_.reset(violation[0]);
  base::ScopedFd violation_write(violation[1]);

  SpawnRequest request;
  request.binary = ProbePath();
  request.argv = {request.binary};
  if (options.sandbox) {
    absl::StatusOr<CgroupLayout> layout = DetectCgroupLayout();
    if (!layout.ok()) return layout.status();
    absl::StatusOr<VmCgroup> cgroup =
        VmCgroup::Create(*layout, spec.vm_id, run->limits_);
    if (!cgroup.ok()) return cgroup.status();
    run->cgroup_ = *std::move(cgroup);
    request.cgroup = &*run->cgroup_;
    request.namespace_flags = NamespaceFlags(/*joins_prepared_netns=*/false) &
                              ~options.skip_namespaces;
    for (const std::string& arg :
         {absl::StrCat("--vm_id=", spec.vm_id),
          absl::StrCat("--kernel=", spec.files[0].host_path),
          absl::StrCat("--initrd=", spec.files[1].host_path),
          absl::StrCat("--runtime_dir=", spec.runtime_dir),
          absl::StrCat("--uid=", spec.uid), absl::StrCat("--gid=", spec.gid)}) {
      request.argv.push_back(arg);
    }
  } else {
    request.argv.push_back("--no_sandbox");
  }
  if (options.exit_after_confine)
    request.argv.push_back("--exit_after_confine");
  if (!options.forbidden.empty()) {
    request.argv.push_back(
        absl::StrCat("--test_forbidden_syscall=", options.forbidden));
    request.argv.push_back(
        absl::StrCat("--forbidden_thread_kind=", options.forbidden_thread));
  }
  request.fds = {{report_write.get(), 3},
                 {control_read.get(), 4},
                 {violation_write.get(), 5}};
  base::ScopedFd netns;
  if (options.sandbox && options.netns_pool != nullptr) {
    absl::StatusOr<base::ScopedFd> taken = options.netns_pool->Take();
    if (!taken.ok()) return taken.status();
    netns = *std::move(taken);
    request.netns_fd = netns.get();
  }
  request.fds.insert(request.fds.end(), options.extra_fds.begin(),
                     options.extra_fds.end());
  const auto t1 = std::chrono::steady_clock::now();
  absl::StatusOr<pid_t> pid = absl::UnknownError("not spawned");
  if (options.zygote != nullptr) {
    pid = options.zygote->Spawn({.argv = request.argv,
                                 .fds = request.fds,
                                 .namespace_flags = request.namespace_flags,
                                 .netns_fd = request.netns_fd});
    if (pid.ok() && run->cgroup_) {
      if (absl::Status s = run->cgroup_->AddProcess(*pid); !s.ok()) {
        ::kill(*pid, SIGKILL);
        ::waitpid(*pid, nullptr, 0);
        return s;
      }
    }
  } else {
    pid = SpawnSandboxed(request);
  }
  if (!pid.ok()) return pid.status();
  const auto t2 = std::chrono::steady_clock::now();
  run->prepare_ms_ = std::chrono::duration<double, std::milli>(t1 - t0).count();
  run->spawn_ms_ = std::chrono::duration<double, std::milli>(t2 - t1).count();
  run->pid_ = *pid;
  return run;
}

ProbeRun::~ProbeRun() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    Wait();
  }
  if (cgroup_) (void)cgroup_->Remove();
  if (!temp_dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(temp_dir_, ignored);
  }
}

absl::StatusOr<std::vector<std::string>> ProbeRun::ReadUntilLocked() {
  std::string buffer;
  std::vector<std::string> lines;
  char chunk[512];
  for (;;) {
    ssize_t n = ::read(report_read_.get(), chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "probe closed its report pipe before \"locked\"; got: ", buffer));
    }
    buffer.append(chunk, n);
    size_t pos;
    while ((pos = buffer.find('\n')) != std::string::npos) {
      std::string line = buffer.substr(0, pos);
      buffer.erase(0, pos + 1);
      if (line.rfind("error: ", 0) == 0) {
        return absl::InternalError(absl::StrCat("probe: ", line));
      }
      if (line == "locked") return lines;
      lines.push_back(line);
    }
  }
}

absl::Status ProbeRun::Send(char command) {
  if (::write(control_write_.get(), &command, 1) != 1) return Errno("send");
  return absl::OkStatus();
}

int ProbeRun::Wait() {
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  return status;
}

std::string ProbeRun::ViolationBytes() {
  ::fcntl(violation_read_.get(), F_SETFL, O_NONBLOCK);
  std::string out;
  char chunk[256];
  ssize_t n;
  while ((n = ::read(violation_read_.get(), chunk, sizeof(chunk))) > 0) {
    out.append(chunk, n);
  }
  return out;
}

}  // namespace sandbox::testing
