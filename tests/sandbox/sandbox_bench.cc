// Start latency of a worker with and without the sandbox, in the same run:
//   bazel run -c opt //tests/sandbox:sandbox_bench [-- --iterations=N]
// One sample:
//   start   = vmms-side preparation (temp kernel + runtime dir; with the
//             sandbox also uid allocation and the cgroup) + spawn + the
//             probe's own confinement (ConfineProcess + LockDown with the
//             full seccomp policy), until the probe reports "locked": what
//             a VM start pays.
//   exit    = the probe's exit until it is reaped (namespace teardown).
//   cleanup = cgroup rmdir and temp dir removal.
// Modes are interleaved so that host noise hits them alike.
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "tests/sandbox/probe_launcher.h"
#include "vmms/sandbox/netns_pool.h"

ABSL_FLAG(int, iterations, 30, "samples per mode");

namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

struct Mode {
  const char* name;
  bool sandbox;
  int skip_namespaces;
  sandbox::NetNamespacePool* pool;
  std::vector<double> start, exit, cleanup, prepare, spawn;
  // Per confinement step, from the probe's "steps:" line.
  std::map<std::string, std::vector<double>> steps;
  std::vector<std::string> step_order;
};

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

bool Sample(Mode& mode, bool record) {
  sandbox::testing::ProbeOptions options;
  options.sandbox = mode.sandbox;
  options.exit_after_confine = true;
  options.skip_namespaces = mode.skip_namespaces;
  options.netns_pool = mode.pool;
  Clock::time_point t0 = Clock::now();
  auto run = sandbox::testing::ProbeRun::Start(options);
  if (!run.ok()) {
    std::fprintf(stderr, "start failed: %s\n", run.status().ToString().c_str());
    return false;
  }
  auto lines = (*run)->ReadUntilLocked();
  if (!lines.ok()) {
    std::fprintf(stderr, "%s\n", lines.status().ToString().c_str());
    return false;
  }
  Clock::time_point t1 = Clock::now();
  int status = (*run)->Wait();
  Clock::time_point t2 = Clock::now();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "probe ended with status %d\n", status);
    return false;
  }
  const double prepare_ms = (*run)->prepare_ms();
  const double spawn_ms = (*run)->spawn_ms();
  run->reset();
  Clock::time_point t3 = Clock::now();
  if (record) {
    mode.start.push_back(Ms(t1 - t0));
    mode.exit.push_back(Ms(t2 - t1));
    mode.cleanup.push_back(Ms(t3 - t2));
    mode.prepare.push_back(prepare_ms);
    mode.spawn.push_back(spawn_ms);
    for (const std::string& line : *lines) {
      if (line.rfind("steps:", 0) != 0) continue;
      for (absl::string_view item :
           absl::StrSplit(line.substr(6), ';', absl::SkipEmpty())) {
        std::pair<std::string, std::string> kv =
            absl::StrSplit(item, absl::MaxSplits('=', 1));
        double ms;
        if (!absl::SimpleAtod(kv.second, &ms)) continue;
        if (!mode.steps.contains(kv.first)) mode.step_order.push_back(kv.first);
        mode.steps[kv.first].push_back(ms);
      }
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (::geteuid() != 0) {
    std::fprintf(stderr, "sandbox_bench needs root\n");
    return 1;
  }
  const int n = absl::GetFlag(FLAGS_iterations);
  // The pool refills in the background, as vmms's would between starts.
  sandbox::NetNamespacePool pool(2);
  Mode modes[] = {{"no sandbox", false, 0, nullptr},
                  {"sandbox", true, 0, nullptr},
                  {"sandbox, netns pool", true, 0, &pool},
                  {"(host netns)", true, CLONE_NEWNET, nullptr}};
  for (int i = 0; i <= n; ++i) {  // sample 0 warms up
    for (Mode& mode : modes) {
      if (!Sample(mode, i > 0)) return 1;
    }
  }
  std::printf(
      "%d samples per mode, ms: start = prepare + spawn + confine "
      "until locked; exit = exit until reaped\n",
      n);
  std::printf("%-20s %8s %8s %8s %9s %9s\n", "mode", "start50", "start90",
              "startmin", "exit50", "cleanup50");
  for (Mode& m : modes) {
    std::printf("%-20s %8.2f %8.2f %8.2f %9.2f %9.2f\n", m.name,
                Percentile(m.start, 0.5), Percentile(m.start, 0.9),
                Percentile(m.start, 0.0), Percentile(m.exit, 0.5),
                Percentile(m.cleanup, 0.5));
  }
  std::printf(
      "\np50 breakdown, ms (prepare and spawn in the launcher, the "
      "rest inside the probe):\n");
  for (Mode& m : modes) {
    std::printf("%-20s prepare %.2f, spawn %.2f", m.name,
                Percentile(m.prepare, 0.5), Percentile(m.spawn, 0.5));
    for (const std::string& step : m.step_order) {
      std::printf(", %s %.2f", step.c_str(), Percentile(m.steps[step], 0.5));
    }
    std::printf("\n");
  }
  for (int i : {1, 2}) {
    std::printf(
        "overhead of \"%s\" (p50 difference): start %.2f ms (target < 5 "
        "ms), spawn-to-reaped %.2f ms\n",
        modes[i].name,
        Percentile(modes[i].start, 0.5) - Percentile(modes[0].start, 0.5),
        Percentile(modes[i].start, 0.5) + Percentile(modes[i].exit, 0.5) -
            Percentile(modes[0].start, 0.5) - Percentile(modes[0].exit, 0.5));
  }
  return 0;
}
