// Start latency: from the StartVm call to the first console byte of the guest,
// through the real vmms, vmwp and KVM, with the worker's sandbox (the default)
// and without it (a second vmms with --no-sandbox), starts interleaved, next to
// a raw reference VMM (kvm_reference: exec, create a VM with the same RAM, run
// to the first port write) measured in the same run. Prints the sandbox's
// overhead (issue 6's target: under 5 ms) and what the worker fork server
// (vmms --no-zygote for the exec'd side) saves: in StartVm's own time (spawn,
// the worker's start-up and partition, up to ready) and in the idle worker's
// memory (RSS, PSS, private; /proc/<pid>/smaps_rollup), with the fork
// server's own footprint.
//
//   bazel run -c opt //tests/bench:start_latency [-- --runs=20 --memory_mib=64]
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "tests/bench/bench_stats.h"
#include "tests/harness/process.h"
#include "tests/harness/vmms_instance.h"

ABSL_FLAG(int, runs, 20, "starts to measure for each side");
ABSL_FLAG(int, memory_mib, 64, "guest RAM for both the VM and the reference");
ABSL_FLAG(std::string, kvm_device, "/dev/kvm", "where vmms finds KVM");

extern char** environ;

namespace {

double MedianMs(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double PercentileMs(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

// One reference start: exec kvm_reference and wait for its first byte.
double ReferenceStartMs(const std::string& binary, int memory_mib) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  std::string mem = std::to_string(memory_mib);
  std::string bin = binary;
  char* argv[] = {bin.data(), mem.data(), nullptr};
  const absl::Time t0 = absl::Now();
  pid_t pid = -1;
  if (posix_spawn(&pid, bin.c_str(), &actions, nullptr, argv, environ) != 0)
    return -1;
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  char byte;
  const ssize_t n = read(pipe_fds[0], &byte, 1);
  const absl::Time t1 = absl::Now();
  close(pipe_fds[0]);
  int status;
  waitpid(pid, &status, 0);
  return n == 1 ? absl::ToDoubleMilliseconds(t1 - t0) : -1;
}

// A vmms on its own state directory with one VM "bench" (the spin guest).
struct Side {
  std::unique_ptr<hvtest::TempDir> dir;
  std::unique_ptr<hvtest::VmmsInstance> vmms;
  std::unique_ptr<hvstack::v1::VmService::Stub> stub;
  std::vector<double> ms;        // StartVm -> first console byte
  std::vector<double> ready_ms;  // StartVm -> its reply (worker ready)
};

bool SetUpSide(Side& side, std::vector<std::string> args, int memory_mib) {
  side.dir = std::make_unique<hvtest::TempDir>();
  side.vmms = std::make_unique<hvtest::VmmsInstance>(side.dir->path(), args);
  if (absl::Status s = side.vmms->Start(); !s.ok()) {
    std::fprintf(stderr, "start vmms: %s\n", s.ToString().c_str());
    return false;
  }
  side.stub = hvstack::v1::VmService::NewStub(grpc::CreateChannel(
      "unix:" + side.vmms->socket_path(), grpc::InsecureChannelCredentials()));
  hvstack::v1::CreateVmRequest request;
  request.set_name("bench");
  request.mutable_config()->set_vcpus(1);
  request.mutable_config()->set_memory_mib(memory_mib);
  request.mutable_config()->set_kernel_path(hvtest::Runfile("guest/spin.elf"));
  hvstack::v1::Vm vm;
  grpc::ClientContext ctx;
  grpc::Status s = side.stub->CreateVm(&ctx, request, &vm);
  if (!s.ok()) {
    std::fprintf(stderr, "CreateVm: %s\n", s.error_message().c_str());
    return false;
  }
  return true;
}

// One start: StartVm -> first console byte; then StopVm. -1 on failure.
// `ready_ms`: StartVm's own time.
double MeasureStart(hvstack::v1::VmService::Stub& stub,
                    double* ready_ms = nullptr, bool stop = true,
                    int64_t* worker_pid = nullptr) {
  const absl::Time t0 = absl::Now();
  hvstack::v1::StartVmRequest start;
  start.set_name("bench");
  hvstack::v1::Vm vm;
  grpc::ClientContext start_ctx;
  grpc::Status s = stub.StartVm(&start_ctx, start, &vm);
  if (!s.ok()) {
    std::fprintf(stderr, "StartVm: %s\n", s.error_message().c_str());
    return -1;
  }
  if (ready_ms != nullptr) {
    *ready_ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
  }
  if (worker_pid != nullptr) *worker_pid = vm.worker_pid();
  hvstack::v1::StreamConsoleRequest console;
  console.set_name("bench");
  console.set_follow(true);
  grpc::ClientContext console_ctx;
  console_ctx.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::seconds(30));
  auto reader = stub.StreamConsole(&console_ctx, console);
  hvstack::v1::ConsoleChunk chunk;
  bool got = false;
  while (reader->Read(&chunk)) {
    if (!chunk.data().empty()) {
      got = true;
      break;
    }
  }
  const absl::Time t1 = absl::Now();
  console_ctx.TryCancel();
  (void)reader->Finish();
  if (!got) {
    std::fprintf(stderr, "no console output\n");
    return -1;
  }
  if (!stop) return absl::ToDoubleMilliseconds(t1 - t0);
  hvstack::v1::StopVmRequest stop_request;
  stop_request.set_name("bench");
  grpc::ClientContext stop_ctx;
  s = stub.StopVm(&stop_ctx, stop_request, &vm);
  if (!s.ok()) {
    std::fprintf(stderr, "StopVm: %s\n", s.error_message().c_str());
    return -1;
  }
  return absl::ToDoubleMilliseconds(t1 - t0);
}

// Rss, Pss and Private_* (summed) of a process, in KiB, from smaps_rollup.
struct Memory {
  int64_t rss_kib = -1, pss_kib = -1, private_kib = -1;
};

Memory MemoryOf(pid_t pid) {
  const std::string path = absl::StrCat("/proc/", pid, "/smaps_rollup");
  return {hvbench::ProcFileKib(path, "Rss"), hvbench::ProcFileKib(path, "Pss"),
          hvbench::ProcFileKib(path, "Private_Clean") +
              hvbench::ProcFileKib(path, "Private_Dirty")};
}

// vmms's child whose command line starts with `vmwp --zygote-fd`: 0 if none.
pid_t ZygoteOf(pid_t vmms) {
  for (pid_t pid : hvtest::ProcessesMentioning("--zygote-fd=")) {
    std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
    std::string field;
    pid_t ppid = 0;
    // pid (comm) state ppid: comm has no spaces here (vmwp).
    stat >> field >> field >> field >> ppid;
    if (ppid == vmms) return pid;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int runs = absl::GetFlag(FLAGS_runs);
  const int memory_mib = absl::GetFlag(FLAGS_memory_mib);

  const std::vector<std::string> kvm = {"--kvm-device",
                                        absl::GetFlag(FLAGS_kvm_device)};
  auto with_kvm = [&kvm](std::vector<std::string> args) {
    args.insert(args.end(), kvm.begin(), kvm.end());
    return args;
  };
  Side sandboxed, exec_sandboxed, unconfined;
  if (!SetUpSide(sandboxed, with_kvm({}), memory_mib) ||
      !SetUpSide(exec_sandboxed, with_kvm({"--no-zygote"}), memory_mib) ||
      !SetUpSide(unconfined, with_kvm({"--no-sandbox"}), memory_mib)) {
    return 1;
  }
  // Interleaved, so that all see the same host load; paired differences.
  std::vector<double> overhead_ms, zygote_gain_ms;
  std::vector<double> zygote_ready_gain_ms;
  for (int i = 0; i < runs; ++i) {
    double with_ready = 0, exec_ready = 0, without_ready = 0;
    const double with = MeasureStart(*sandboxed.stub, &with_ready);
    const double exec = MeasureStart(*exec_sandboxed.stub, &exec_ready);
    const double without = MeasureStart(*unconfined.stub, &without_ready);
    if (with < 0 || exec < 0 || without < 0) return 1;
    sandboxed.ready_ms.push_back(with_ready);
    exec_sandboxed.ready_ms.push_back(exec_ready);
    unconfined.ready_ms.push_back(without_ready);
    zygote_ready_gain_ms.push_back(exec_ready - with_ready);
    sandboxed.ms.push_back(with);
    exec_sandboxed.ms.push_back(exec);
    unconfined.ms.push_back(without);
    overhead_ms.push_back(with - without);
    zygote_gain_ms.push_back(exec - with);
  }
  const std::vector<double>& vm_ms = sandboxed.ms;

  const std::string reference = hvtest::Runfile("tests/bench/kvm_reference");
  // The reference opens /dev/kvm itself.
  std::vector<double> ref_ms;
  for (int i = 0; i < runs; ++i) {
    const double ms = ReferenceStartMs(reference, memory_mib);
    if (ms < 0) {
      std::fprintf(stderr, "reference run failed\n");
      return 1;
    }
    ref_ms.push_back(ms);
  }

  const double vm_median = MedianMs(vm_ms);
  const double ref_median = MedianMs(ref_ms);
  std::printf("start latency, %d runs each, %d MiB guest RAM, 1 vCPU\n", runs,
              memory_mib);
  std::printf(
      "  hvstack  StartVm -> first console byte: median %8.2f ms  p90 %8.2f "
      "ms (sandboxed worker)\n",
      vm_median, PercentileMs(vm_ms, 0.9));
  std::printf(
      "  hvstack  sandboxed, exec'd (--no-zygote): median %6.2f ms  p90 %8.2f "
      "ms\n",
      MedianMs(exec_sandboxed.ms), PercentileMs(exec_sandboxed.ms, 0.9));
  std::printf(
      "  fork server's gain (paired, exec - fork): median %6.2f ms  p90 %8.2f "
      "ms\n",
      MedianMs(zygote_gain_ms), PercentileMs(zygote_gain_ms, 0.9));
  std::printf(
      "  hvstack  --no-sandbox, same measure:    median %8.2f ms  p90 %8.2f "
      "ms\n",
      MedianMs(unconfined.ms), PercentileMs(unconfined.ms, 0.9));
  std::printf(
      "  sandbox overhead (paired, interleaved): median %8.2f ms  p90 %8.2f "
      "ms (target < 5 ms)\n",
      MedianMs(overhead_ms), PercentileMs(overhead_ms, 0.9));
  std::printf(
      "  reference exec -> first port write:     median %8.2f ms  p90 %8.2f "
      "ms\n",
      ref_median, PercentileMs(ref_ms, 0.9));
  std::printf("  ratio (hvstack / reference): %.2fx\n", vm_median / ref_median);
  std::printf(
      "StartVm's own time (spawn + worker start-up + partition, to "
      "ready):\n");
  std::printf("  forked (default):      median %8.2f ms  p90 %8.2f ms\n",
              MedianMs(sandboxed.ready_ms),
              PercentileMs(sandboxed.ready_ms, 0.9));
  std::printf("  exec'd (--no-zygote):  median %8.2f ms  p90 %8.2f ms\n",
              MedianMs(exec_sandboxed.ready_ms),
              PercentileMs(exec_sandboxed.ready_ms, 0.9));
  std::printf("  --no-sandbox:          median %8.2f ms  p90 %8.2f ms\n",
              MedianMs(unconfined.ready_ms),
              PercentileMs(unconfined.ready_ms, 0.9));
  std::printf("  fork server's gain (paired): median %8.2f ms  p90 %8.2f ms\n",
              MedianMs(zygote_ready_gain_ms),
              PercentileMs(zygote_ready_gain_ms, 0.9));

  // Idle workers' memory: one running VM per side, read after it printed.
  std::printf(
      "idle worker memory (KiB; smaps_rollup after the first console "
      "byte + 1 s):\n");
  struct Row {
    const char* name;
    Side* side;
  };
  for (const Row& row : {Row{"forked (default)", &sandboxed},
                         Row{"exec'd (--no-zygote)", &exec_sandboxed},
                         Row{"--no-sandbox", &unconfined}}) {
    int64_t pid = 0;
    if (MeasureStart(*row.side->stub, nullptr, /*stop=*/false, &pid) < 0 ||
        pid <= 0) {
      return 1;
    }
    absl::SleepFor(absl::Seconds(1));
    const Memory m = MemoryOf(static_cast<pid_t>(pid));
    std::printf("  %-22s worker %7d: Rss %7lld  Pss %7lld  Private %7lld\n",
                row.name, static_cast<int>(pid),
                static_cast<long long>(m.rss_kib),
                static_cast<long long>(m.pss_kib),
                static_cast<long long>(m.private_kib));
  }
  if (pid_t zygote = ZygoteOf(sandboxed.vmms->pid()); zygote > 0) {
    const Memory m = MemoryOf(zygote);
    std::printf(
        "  %-22s        %7d: Rss %7lld  Pss %7lld  Private %7lld (once "
        "per host)\n",
        "the fork server", static_cast<int>(zygote),
        static_cast<long long>(m.rss_kib), static_cast<long long>(m.pss_kib),
        static_cast<long long>(m.private_kib));
  } else {
    std::printf("  no fork server found under vmms %d\n",
                static_cast<int>(sandboxed.vmms->pid()));
  }
  return 0;
}
