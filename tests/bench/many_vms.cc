// 50 tiny VMs running at once on this machine: how long they take to start,
// and what they cost while idle: vmms's CPU and memory, each worker's memory,
// the total. Each VM runs //guest:idle (16 MiB, the smallest allowed RAM;
// prints a line, then halts with interrupts off, which blocks inside KVM_RUN).
// The reference, measured in the same run, is the same vmms with no VM
// running.
//
//   bazel run -c opt //tests/bench:many_vms [-- --vms=50 --idle_seconds=10]
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "tests/bench/bench_stats.h"
#include "tests/harness/process.h"
#include "tests/harness/vmms_instance.h"

ABSL_FLAG(int, vms, 50, "VMs to run at once");
ABSL_FLAG(int, idle_seconds, 10, "how long to measure the idle cost");

namespace {

using hvbench::CpuTicks;
using hvbench::Percentile;
using hvbench::ProcKib;

// CPU use of `pids` over `seconds`, in percent of one core.
double CpuPercent(const std::vector<int>& pids, int seconds) {
  int64_t before = 0, after = 0;
  for (int pid : pids) before += CpuTicks(pid);
  const absl::Time t0 = absl::Now();
  absl::SleepFor(absl::Seconds(seconds));
  for (int pid : pids) after += CpuTicks(pid);
  const double wall = absl::ToDoubleSeconds(absl::Now() - t0);
  return 100.0 * static_cast<double>(after - before) /
         static_cast<double>(sysconf(_SC_CLK_TCK)) / wall;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int count = absl::GetFlag(FLAGS_vms);
  const int idle_seconds = absl::GetFlag(FLAGS_idle_seconds);

  hvtest::TempDir dir;
  hvtest::VmmsInstance vmms(dir.path());
  if (absl::Status s = vmms.Start(); !s.ok()) {
    std::fprintf(stderr, "start vmms: %s\n", s.ToString().c_str());
    return 1;
  }
  auto stub = hvstack::v1::VmService::NewStub(grpc::CreateChannel(
      "unix:" + vmms.socket_path(), grpc::InsecureChannelCredentials()));
  const std::string kernel = hvtest::Runfile("guest/idle.elf");
  const int vmms_pid = vmms.pid();

  for (int i = 0; i < count; ++i) {
    hvstack::v1::CreateVmRequest request;
    request.set_name(absl::StrCat("tiny-", i));
    request.mutable_config()->set_vcpus(1);
    request.mutable_config()->set_memory_mib(16);
    request.mutable_config()->set_kernel_path(kernel);
    grpc::ClientContext context;
    hvstack::v1::Vm vm;
    if (grpc::Status s = stub->CreateVm(&context, request, &vm); !s.ok()) {
      std::fprintf(stderr, "CreateVm: %s\n", s.error_message().c_str());
      return 1;
    }
  }

  // Reference: the same vmms, VMs defined, none running.
  absl::SleepFor(absl::Seconds(1));
  const double ref_cpu = CpuPercent({vmms_pid}, idle_seconds);
  const int64_t ref_rss = ProcKib(vmms_pid, "status", "VmRSS");

  std::vector<double> start_ms;
  const absl::Time all_t0 = absl::Now();
  for (int i = 0; i < count; ++i) {
    hvstack::v1::StartVmRequest request;
    request.set_name(absl::StrCat("tiny-", i));
    grpc::ClientContext context;
    hvstack::v1::Vm vm;
    const absl::Time t0 = absl::Now();
    grpc::Status s = stub->StartVm(&context, request, &vm);
    start_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
    if (!s.ok()) {
      std::fprintf(stderr, "StartVm tiny-%d: %s\n", i,
                   s.error_message().c_str());
      return 1;
    }
  }
  const double all_s = absl::ToDoubleSeconds(absl::Now() - all_t0);

  absl::SleepFor(absl::Seconds(2));  // Let the guests reach their hlt.
  hvstack::v1::ListVmsResponse list;
  {
    grpc::ClientContext context;
    (void)stub->ListVms(&context, hvstack::v1::ListVmsRequest(), &list);
  }
  std::vector<int> workers;
  int running = 0;
  for (const hvstack::v1::Vm& vm : list.vms()) {
    if (vm.state() == hvstack::v1::VM_STATE_RUNNING) ++running;
    if (vm.worker_pid() > 0)
      workers.push_back(static_cast<int>(vm.worker_pid()));
  }
  // vmms alone, then vmms + workers, over the same kind of window.
  const double vmms_cpu = CpuPercent({vmms_pid}, idle_seconds);
  const double workers_cpu = CpuPercent(workers, idle_seconds);
  const int64_t vmms_rss = ProcKib(vmms_pid, "status", "VmRSS");
  const int64_t vmms_pss = ProcKib(vmms_pid, "smaps_rollup", "Pss");
  std::vector<double> rss, pss;
  double rss_total = 0, pss_total = 0;
  for (int pid : workers) {
    rss.push_back(static_cast<double>(ProcKib(pid, "status", "VmRSS")));
    pss.push_back(static_cast<double>(ProcKib(pid, "smaps_rollup", "Pss")));
    rss_total += rss.back();
    pss_total += pss.back();
  }

  std::printf(
      "%d VMs (//guest:idle, 1 vCPU, 16 MiB each), %d Running with a "
      "worker each (%zu worker pids)\n",
      count, running, workers.size());
  std::printf(
      "start, one after another: %.1f s in all; StartVm p50 %.0f ms, "
      "p99 %.0f ms\n",
      all_s, Percentile(start_ms, 0.5), Percentile(start_ms, 0.99));
  std::printf(
      "vmms idle CPU:  %5.2f%% of a core with %d running   (reference, "
      "none running: %.2f%%)\n",
      vmms_cpu, running, ref_cpu);
  std::printf(
      "vmms RSS:       %6.1f MiB with %d running (PSS %.1f MiB)   "
      "(reference, none running: %.1f MiB; %.2fx)\n",
      vmms_rss / 1024.0, running, vmms_pss / 1024.0, ref_rss / 1024.0,
      static_cast<double>(vmms_rss) / static_cast<double>(ref_rss));
  std::printf("workers CPU:    %5.2f%% of a core for all %zu together\n",
              workers_cpu, workers.size());
  std::printf(
      "worker RSS:     min %.1f / p50 %.1f / max %.1f MiB; PSS p50 %.1f "
      "MiB (shared libraries counted once)\n",
      Percentile(rss, 0) / 1024, Percentile(rss, 0.5) / 1024,
      Percentile(rss, 1) / 1024, Percentile(pss, 0.5) / 1024);
  std::printf(
      "total:          workers RSS %.0f MiB, PSS %.0f MiB; vmms + "
      "workers PSS %.0f MiB\n",
      rss_total / 1024, pss_total / 1024,
      (pss_total + static_cast<double>(vmms_pss)) / 1024);
  std::printf(
      "(CPU figures: /proc/<pid>/stat ticks over %d s windows, "
      "resolution %.2f%%)\n",
      idle_seconds,
      100.0 / static_cast<double>(sysconf(_SC_CLK_TCK)) / idle_seconds);

  const absl::Time stop_t0 = absl::Now();
  for (int i = 0; i < count; ++i) {
    hvstack::v1::StopVmRequest request;
    request.set_name(absl::StrCat("tiny-", i));
    grpc::ClientContext context;
    hvstack::v1::Vm vm;
    (void)stub->StopVm(&context, request, &vm);
  }
  std::printf("stop, one after another: %.1f s in all\n",
              absl::ToDoubleSeconds(absl::Now() - stop_t0));
  return 0;
}
