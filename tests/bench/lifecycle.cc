// A whole tiny VM lifecycle, hvstack next to QEMU, in the same run:
//   hvstack: StartVm -> the guest prints and powers off -> Off recorded
//            (the Off event's time, stamped by vmms), through the real vmms
//            (sandboxed workers) and vmwp;
//   QEMU:    a plain `qemu-system-x86_64 -M microvm -accel kvm` process
//            running the same image (//guest:pvh_hello) from exec to exit.
// Runs are interleaved so both see the same host load. Also prints the
// hvstack side's split: StartVm returned (Running recorded), and the guest's
// end (Off recorded) after that.
//
//   bazel run -c opt //tests/bench:lifecycle [-- --runs=20 --memory_mib=64]
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/grpcpp.h"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "tests/bench/bench_stats.h"
#include "tests/harness/process.h"
#include "tests/harness/vmms_instance.h"

ABSL_FLAG(int, runs, 20, "lifecycles to measure on each side");
ABSL_FLAG(int, memory_mib, 64, "guest RAM on both sides");
ABSL_FLAG(std::string, qemu, "/usr/bin/qemu-system-x86_64",
          "the QEMU to compare with");
ABSL_FLAG(std::string, kvm_device, "/dev/kvm", "where both sides find KVM");

extern char** environ;

namespace {

using hvstack::v1::VmEvent;

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

// One QEMU run: exec -> the guest exits QEMU through isa-debug-exit. -1 on
// failure.
double QemuLifecycleMs(const std::string& qemu, const std::string& kernel,
                       int memory_mib) {
  std::vector<std::string> args = {
      qemu,
      "-M",
      "microvm,x-option-roms=off,rtc=off,isa-serial=on",
      "-accel",
      "kvm",
      "-cpu",
      "qemu64",
      "-m",
      std::to_string(memory_mib),
      "-smp",
      "1",
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-serial",
      "stdio",
      "-device",
      "isa-debug-exit,iobase=0xf4,iosize=1",
      "-no-reboot",
      "-kernel",
      kernel};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  const absl::Time t0 = absl::Now();
  pid_t pid = -1;
  const int rc =
      posix_spawn(&pid, qemu.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const absl::Time t1 = absl::Now();
  // isa-debug-exit with 0 written: exit status (0 << 1) | 1.
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 1) {
    std::fprintf(stderr, "qemu ended with status 0x%x\n", status);
    return -1;
  }
  return Ms(t1 - t0);
}

struct HvstackRun {
  double running_ms = 0;  // StartVm returned (Running recorded)
  double off_ms = 0;      // Off recorded (the event's time)
  double seen_ms = 0;     // the Off event reached this client
};

class HvstackSide {
 public:
  bool SetUp(const std::string& kernel, int memory_mib) {
    dir_ = std::make_unique<hvtest::TempDir>();
    vmms_ = std::make_unique<hvtest::VmmsInstance>(
        dir_->path(), std::vector<std::string>{
                          "--kvm-device", absl::GetFlag(FLAGS_kvm_device)});
    if (absl::Status s = vmms_->Start(); !s.ok()) {
      std::fprintf(stderr, "start vmms: %s\n", s.ToString().c_str());
      return false;
    }
    stub_ = hvstack::v1::VmService::NewStub(grpc::CreateChannel(
        "unix:" + vmms_->socket_path(), grpc::InsecureChannelCredentials()));
    hvstack::v1::CreateVmRequest request;
    request.set_name("life");
    request.mutable_config()->set_vcpus(1);
    request.mutable_config()->set_memory_mib(memory_mib);
    request.mutable_config()->set_kernel_path(kernel);
    hvstack::v1::Vm vm;
    grpc::ClientContext ctx;
    if (grpc::Status s = stub_->CreateVm(&ctx, request, &vm); !s.ok()) {
      std::fprintf(stderr, "CreateVm: %s\n", s.error_message().c_str());
      return false;
    }
    // Every event from now on, pushed as it is recorded.
    hvstack::v1::WatchEventsRequest watch;
    watch.set_follow(true);
    events_ = stub_->WatchEvents(&events_ctx_, watch);
    return true;
  }

  ~HvstackSide() {
    events_ctx_.TryCancel();
    if (events_ != nullptr) (void)events_->Finish();
  }

  bool Run(HvstackRun& run) {
    const absl::Time t0 = absl::Now();
    hvstack::v1::StartVmRequest start;
    start.set_name("life");
    hvstack::v1::Vm vm;
    grpc::ClientContext ctx;
    if (grpc::Status s = stub_->StartVm(&ctx, start, &vm); !s.ok()) {
      std::fprintf(stderr, "StartVm: %s\n", s.error_message().c_str());
      return false;
    }
    const absl::Time running = absl::Now();
    VmEvent event;
    while (events_->Read(&event)) {
      if (event.kind() != VmEvent::KIND_STATE_CHANGED ||
          event.vm_name() != "life" ||
          event.state() != hvstack::v1::VM_STATE_OFF) {
        continue;
      }
      // An Off of an earlier run would be older than this start.
      const absl::Time recorded = absl::FromUnixMicros(
          google::protobuf::util::TimeUtil::TimestampToMicroseconds(
              event.time()));
      if (recorded < t0) continue;
      if (event.reason() != "guest powered off") {
        std::fprintf(stderr, "VM ended: %s\n", event.reason().c_str());
        return false;
      }
      run.running_ms = Ms(running - t0);
      run.off_ms = Ms(recorded - t0);
      run.seen_ms = Ms(absl::Now() - t0);
      return true;
    }
    std::fprintf(stderr, "event stream ended\n");
    return false;
  }

 private:
  std::unique_ptr<hvtest::TempDir> dir_;
  std::unique_ptr<hvtest::VmmsInstance> vmms_;
  std::unique_ptr<hvstack::v1::VmService::Stub> stub_;
  grpc::ClientContext events_ctx_;
  std::unique_ptr<grpc::ClientReader<VmEvent>> events_;
};

void Print(const char* what, const std::vector<double>& v) {
  std::printf("  %-52s median %8.2f ms  p10 %8.2f  p90 %8.2f\n", what,
              hvbench::Percentile(v, 0.5), hvbench::Percentile(v, 0.1),
              hvbench::Percentile(v, 0.9));
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int runs = absl::GetFlag(FLAGS_runs);
  const int memory_mib = absl::GetFlag(FLAGS_memory_mib);
  const std::string qemu = absl::GetFlag(FLAGS_qemu);
  const std::string kernel = hvtest::Runfile("guest/pvh_hello.elf");
  if (access(absl::GetFlag(FLAGS_kvm_device).c_str(), R_OK | W_OK) != 0) {
    std::fprintf(stderr, "needs read/write access to %s\n",
                 absl::GetFlag(FLAGS_kvm_device).c_str());
    return 1;
  }
  if (access(qemu.c_str(), X_OK) != 0) {
    std::fprintf(stderr,
                 "needs %s (apt-get install qemu-system-x86), or --qemu=PATH\n",
                 qemu.c_str());
    return 1;
  }
  HvstackSide hvstack;
  if (!hvstack.SetUp(kernel, memory_mib)) return 1;

  std::vector<double> running, off, seen, after_running, qemu_ms, paired;
  for (int i = 0; i < runs; ++i) {
    HvstackRun run;
    if (!hvstack.Run(run)) return 1;
    const double q = QemuLifecycleMs(qemu, kernel, memory_mib);
    if (q < 0) return 1;
    running.push_back(run.running_ms);
    off.push_back(run.off_ms);
    seen.push_back(run.seen_ms);
    after_running.push_back(run.off_ms - run.running_ms);
    qemu_ms.push_back(q);
    paired.push_back(run.off_ms - q);
  }
  std::printf(
      "lifecycle of //guest:pvh_hello (print one line, power off), %d runs "
      "each, %d MiB, 1 vCPU, interleaved\n",
      runs, memory_mib);
  Print("hvstack StartVm -> Off recorded (sandboxed)", off);
  Print("  of which StartVm returned (Running recorded)", running);
  Print("  of which Running -> Off recorded", after_running);
  Print("hvstack StartVm -> Off event at the client", seen);
  Print("qemu -M microvm -accel kvm: exec -> exit", qemu_ms);
  Print("paired difference (hvstack - qemu)", paired);
  const double h = hvbench::Percentile(off, 0.5);
  const double q = hvbench::Percentile(qemu_ms, 0.5);
  std::printf("  hvstack / qemu (medians): %.2fx -> hvstack is %s\n", h / q,
              h < q ? "FASTER" : "slower");
  return 0;
}
