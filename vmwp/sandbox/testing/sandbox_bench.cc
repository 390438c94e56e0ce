// Start latency of a worker with and without the sandbox, in the same run:
//   bazel run -c opt //vmwp/sandbox:sandbox_bench [-- --iterations=N]
// Each sample: vmms-side preparation (temp kernel + runtime dir; with the
// sandbox also uid allocation and the cgroup), spawn, the probe's own
// confinement (ConfineProcess + LockDown with the full seccomp policy), exit
// and reaping; cleanup (cgroup rmdir, temp dir) is timed separately.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "vmwp/sandbox/testing/probe_launcher.h"

ABSL_FLAG(int, iterations, 30, "samples per mode");

namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

struct Samples {
  std::vector<double> start, cleanup;
};

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

bool Sample(bool sandbox, Samples& out) {
  sandbox::testing::ProbeOptions options;
  options.sandbox = sandbox;
  options.exit_after_confine = true;
  Clock::time_point t0 = Clock::now();
  auto run = sandbox::testing::ProbeRun::Start(options);
  if (!run.ok()) {
    std::fprintf(stderr, "start failed: %s\n", run.status().ToString().c_str());
    return false;
  }
  int status = (*run)->Wait();
  Clock::time_point t1 = Clock::now();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "probe ended with status %d\n", status);
    return false;
  }
  run->reset();
  Clock::time_point t2 = Clock::now();
  out.start.push_back(Ms(t1 - t0));
  out.cleanup.push_back(Ms(t2 - t1));
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
  Samples plain, boxed;
  // Interleaved, so that host noise hits both modes alike; one warm-up each.
  for (int i = 0; i <= n; ++i) {
    Samples* p = i == 0 ? new Samples : &plain;
    Samples* b = i == 0 ? new Samples : &boxed;
    if (!Sample(false, *p) || !Sample(true, *b)) return 1;
  }
  std::printf("spawn + confine + exit, %d samples each (ms)\n", n);
  std::printf("%-12s %8s %8s %8s %12s\n", "mode", "p50", "p90", "min",
              "cleanup p50");
  for (const auto& [name, s] :
       {std::pair<const char*, Samples*>{"no sandbox", &plain},
        {"sandbox", &boxed}}) {
    std::printf("%-12s %8.2f %8.2f %8.2f %12.2f\n", name,
                Percentile(s->start, 0.5), Percentile(s->start, 0.9),
                Percentile(s->start, 0.0), Percentile(s->cleanup, 0.5));
  }
  const double overhead =
      Percentile(boxed.start, 0.5) - Percentile(plain.start, 0.5);
  std::printf("sandbox overhead (p50 difference): %.2f ms (target < 5 ms)\n",
              overhead);
  return 0;
}
