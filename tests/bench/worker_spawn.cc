// The spawn part of a start, without KVM: how long the real vmwp takes from
// vmms's spawn call to the first thing it does with its WorkerConfig, exec'd
// into new namespaces (sandbox::SpawnSandboxed, vmms --no-zygote) against
// forked by the warm fork server (sandbox::Zygote, vmms's default), runs
// interleaved. The worker is given a config path that does not exist, so it
// gives up right there: it closes its ready pipe (the end of the spawn part:
// loader, relocations, static initialization, flag parsing) and exits (its
// exit report written, as on any failed start). Both are vmms's children,
// reaped here. Each joins a pooled empty net namespace, as vmms's workers do.
// Then memory: one worker of each kind, held where it opens its config (a
// FIFO nobody writes yet), after its whole start-up and before anything of a
// VM: Rss, Pss and private KiB from smaps_rollup, and the fork server's own.
// (A VM's guest RAM and device state come after and are the same for both.)
// Needs root (namespaces); no /dev/kvm.
//
//   bazel run -c opt //tests/bench:worker_spawn [-- --runs=50]
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/scoped_fd.h"
#include "tests/bench/bench_stats.h"
#include "tests/harness/process.h"
#include "vmms/sandbox/netns_pool.h"
#include "vmms/sandbox/spawn.h"
#include "vmms/sandbox/zygote.h"

ABSL_FLAG(int, runs, 30, "spawns to measure for each side");

extern char** environ;

namespace {

struct Times {
  double ready_eof_ms = -1;  // the worker is past its start-up
  double reaped_ms = -1;     // and has exited
};

// One worker: spawn, wait for EOF on its ready pipe, reap it.
Times SpawnOnce(const std::string& vmwp, const std::string& dir,
                sandbox::NetNamespacePool& pool, sandbox::Zygote* zygote) {
  Times times;
  // A pooled empty net namespace, as vmms gives every worker.
  absl::StatusOr<base::ScopedFd> netns = pool.Take();
  if (!netns.ok()) return times;
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) return times;
  base::ScopedFd ready_read(ready[0]), ready_write(ready[1]);
  base::ScopedFd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  sandbox::SpawnRequest request;
  request.binary = vmwp;
  request.argv = {vmwp, absl::StrCat("--config=", dir, "/missing.pb"),
                  "--ready-fd=4"};
  for (char** e = environ; *e != nullptr; ++e) request.env.push_back(*e);
  request.fds = {{dev_null.get(), 0}, {ready_write.get(), 4}};
  request.namespace_flags =
      sandbox::NamespaceFlags(/*joins_prepared_netns=*/false);
  request.netns_fd = netns->get();
  const absl::Time t0 = absl::Now();
  absl::StatusOr<pid_t> pid =
      zygote != nullptr
          ? zygote->Spawn({.argv = request.argv,
                           .fds = request.fds,
                           .namespace_flags = request.namespace_flags,
                           .netns_fd = request.netns_fd})
          : sandbox::SpawnSandboxed(request);
  if (!pid.ok()) {
    std::fprintf(stderr, "spawn: %s\n", pid.status().ToString().c_str());
    return times;
  }
  ready_write.reset();
  char byte;
  while (::read(ready_read.get(), &byte, 1) > 0) {
  }
  times.ready_eof_ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
  int status = 0;
  ::waitpid(*pid, &status, 0);
  times.reaped_ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
  return times;
}

// A worker blocked opening `fifo` as its config.
struct Held {
  pid_t pid = 0;
  base::ScopedFd ready_read;
};

Held SpawnHeld(const std::string& vmwp, const std::string& fifo,
               sandbox::NetNamespacePool& pool, sandbox::Zygote* zygote) {
  Held held;
  absl::StatusOr<base::ScopedFd> netns = pool.Take();
  int ready[2];
  if (!netns.ok() || ::pipe2(ready, O_CLOEXEC) != 0) return held;
  held.ready_read.reset(ready[0]);
  base::ScopedFd ready_write(ready[1]);
  base::ScopedFd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  std::vector<std::string> args = {vmwp, absl::StrCat("--config=", fifo),
                                   "--ready-fd=4"};
  std::vector<std::pair<int, int>> fds = {{dev_null.get(), 0},
                                          {ready_write.get(), 4}};
  const int flags = sandbox::NamespaceFlags(/*joins_prepared_netns=*/false);
  absl::StatusOr<pid_t> pid = absl::UnknownError("not spawned");
  if (zygote != nullptr) {
    pid = zygote->Spawn({.argv = args,
                         .fds = fds,
                         .namespace_flags = flags,
                         .netns_fd = netns->get()});
  } else {
    sandbox::SpawnRequest request;
    request.binary = vmwp;
    request.argv = args;
    for (char** e = environ; *e != nullptr; ++e) request.env.push_back(*e);
    request.fds = fds;
    request.namespace_flags = flags;
    request.netns_fd = netns->get();
    pid = sandbox::SpawnSandboxed(request);
  }
  if (pid.ok()) held.pid = *pid;
  return held;
}

// Until `pid` sits in openat (the config FIFO): its start-up is done.
bool WaitInOpen(pid_t pid) {
  for (int i = 0; i < 3000; ++i) {
    std::ifstream in(absl::StrCat("/proc/", pid, "/syscall"));
    long number = -1;
    if (in >> number && number == 257) return true;  // openat
    ::usleep(10000);
  }
  return false;
}

void PrintMemory(const char* name, pid_t pid) {
  const std::string path = absl::StrCat("/proc/", pid, "/smaps_rollup");
  std::printf(
      "  %-34s pid %7d: Rss %7lld  Pss %7lld  Private %7lld KiB\n", name,
      static_cast<int>(pid),
      static_cast<long long>(hvbench::ProcFileKib(path, "Rss")),
      static_cast<long long>(hvbench::ProcFileKib(path, "Pss")),
      static_cast<long long>(hvbench::ProcFileKib(path, "Private_Clean") +
                             hvbench::ProcFileKib(path, "Private_Dirty")));
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (::geteuid() != 0) {
    std::fprintf(stderr, "worker_spawn needs root (new namespaces)\n");
    return 1;
  }
  const int runs = absl::GetFlag(FLAGS_runs);
  const std::string vmwp = hvtest::Runfile("vmwp/vmwp");
  hvtest::TempDir dir;
  absl::StatusOr<std::unique_ptr<sandbox::Zygote>> zygote =
      sandbox::Zygote::Start(vmwp);
  if (!zygote.ok()) {
    std::fprintf(stderr, "%s\n", zygote.status().ToString().c_str());
    return 1;
  }
  sandbox::NetNamespacePool pool(4);
  // Warm-up of both (page cache, the zygote's own start-up).
  SpawnOnce(vmwp, dir.path(), pool, nullptr);
  SpawnOnce(vmwp, dir.path(), pool, zygote->get());

  std::vector<double> exec_ready, fork_ready, exec_reaped, fork_reaped, gain;
  for (int i = 0; i < runs; ++i) {
    const Times exec = SpawnOnce(vmwp, dir.path(), pool, nullptr);
    const Times fork = SpawnOnce(vmwp, dir.path(), pool, zygote->get());
    if (exec.reaped_ms < 0 || fork.reaped_ms < 0) return 1;
    exec_ready.push_back(exec.ready_eof_ms);
    fork_ready.push_back(fork.ready_eof_ms);
    exec_reaped.push_back(exec.reaped_ms);
    fork_reaped.push_back(fork.reaped_ms);
    gain.push_back(exec.ready_eof_ms - fork.ready_eof_ms);
  }
  std::printf(
      "vmwp spawn part (spawn call -> worker past start-up: ready pipe EOF "
      "on its missing config), %d runs each, interleaved, new namespaces (net: "
      "pooled):\n",
      runs);
  auto row = [](const char* name, const std::vector<double>& ready,
                const std::vector<double>& reaped) {
    std::printf(
        "  %-34s median %8.2f ms  p90 %8.2f ms  (exited: median %8.2f "
        "ms)\n",
        name, hvbench::Percentile(ready, 0.5), hvbench::Percentile(ready, 0.9),
        hvbench::Percentile(reaped, 0.5));
  };
  row("exec'd (SpawnSandboxed, --no-zygote)", exec_ready, exec_reaped);
  row("forked (fork server, default)", fork_ready, fork_reaped);
  std::printf(
      "  fork server's gain (paired):        median %8.2f ms  p90 %8.2f ms\n",
      hvbench::Percentile(gain, 0.5), hvbench::Percentile(gain, 0.9));

  const std::string fifo = absl::StrCat(dir.path(), "/config.fifo");
  if (::mkfifo(fifo.c_str(), 0600) != 0) return 1;
  Held exec = SpawnHeld(vmwp, fifo, pool, nullptr);
  Held fork = SpawnHeld(vmwp, fifo, pool, zygote->get());
  if (exec.pid <= 0 || fork.pid <= 0 || !WaitInOpen(exec.pid) ||
      !WaitInOpen(fork.pid)) {
    std::fprintf(stderr, "the held workers did not reach their config\n");
    return 1;
  }
  std::printf(
      "worker memory after start-up (held opening its config), both at "
      "once:\n");
  PrintMemory("exec'd", exec.pid);
  PrintMemory("forked", fork.pid);
  PrintMemory("the fork server (once per host)", (*zygote)->pid());
  for (pid_t pid : {exec.pid, fork.pid}) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  return 0;
}
