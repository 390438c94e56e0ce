// vmms SIGKILLed in the middle of 20 concurrent StartVm calls: after a
// restart on the same state directory every VM is Running (its worker
// reattached) or Off with the reason, none is left Starting, and no worker
// runs a VM recorded Off. Twice: with the real sandboxed vmwp and the idle
// guest (needs /dev/kvm), and with vmms's KVM-free stand-in worker
// (vmms/testing/fake_vmwp, --no-sandbox), which runs anywhere.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "tests/harness/process.h"
#include "tests/harness/vmms_instance.h"

namespace hvtest {
namespace {

using hvstack::v1::Vm;
using hvstack::v1::VmService;

constexpr int kVms = 20;

struct Worker {
  std::vector<std::string> vmms_args;
  std::string kernel;
  std::string cmdline;
};

class KillDuringStartsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    vmms_.reset();
    for (pid_t pid :
         ProcessesMentioning(absl::StrCat("--config=", dir_.path(), "/vms/")))
      kill(pid, SIGKILL);
  }

  std::unique_ptr<VmService::Stub> Connect() {
    return VmService::NewStub(grpc::CreateChannel(
        "unix:" + vmms_->socket_path(), grpc::InsecureChannelCredentials()));
  }

  std::vector<Vm> List(VmService::Stub& stub) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    hvstack::v1::ListVmsResponse response;
    grpc::Status s =
        stub.ListVms(&ctx, hvstack::v1::ListVmsRequest(), &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {response.vms().begin(), response.vms().end()};
  }

  void Run(const Worker& worker) {
    vmms_ = std::make_unique<VmmsInstance>(dir_.path(), worker.vmms_args);
    ASSERT_TRUE(vmms_->Start().ok());
    std::unique_ptr<VmService::Stub> stub = Connect();
    for (int i = 0; i < kVms; ++i) {
      hvstack::v1::CreateVmRequest request;
      request.set_name(absl::StrCat("vm", i));
      request.mutable_config()->set_vcpus(1);
      request.mutable_config()->set_memory_mib(16);
      request.mutable_config()->set_kernel_path(worker.kernel);
      request.mutable_config()->set_cmdline(worker.cmdline);
      grpc::ClientContext ctx;
      Vm vm;
      grpc::Status s = stub->CreateVm(&ctx, request, &vm);
      ASSERT_TRUE(s.ok()) << s.error_message();
    }

    // 20 concurrent starts; vmms dies while they are under way: once the
    // first VM is Running, so that the others are at every step between
    // "not started yet" and "ready".
    std::atomic<int> answered{0};
    std::vector<std::thread> starts;
    for (int i = 0; i < kVms; ++i) {
      starts.emplace_back([this, i, &answered] {
        std::unique_ptr<VmService::Stub> own = Connect();
        hvstack::v1::StartVmRequest request;
        request.set_name(absl::StrCat("vm", i));
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(60));
        Vm vm;
        (void)own->StartVm(&ctx, request, &vm);  // UNAVAILABLE once killed
        ++answered;
      });
    }
    std::map<std::string, int> seen;
    for (absl::Time deadline = absl::Now() + absl::Seconds(60);
         absl::Now() < deadline;) {
      seen.clear();
      for (const Vm& vm : List(*stub))
        ++seen[hvstack::v1::VmState_Name(vm.state())];
      if (seen["VM_STATE_RUNNING"] > 0) break;
      absl::SleepFor(absl::Milliseconds(2));
    }
    vmms_->Kill();
    for (std::thread& t : starts) t.join();
    std::string at_kill;
    for (const auto& [state, n] : seen)
      absl::StrAppend(&at_kill, state, "=", n, " ");
    std::cerr << "last listing before SIGKILL: " << at_kill << "("
              << answered.load() << " StartVm answered)\n";
    ASSERT_GT(seen["VM_STATE_RUNNING"], 0) << "no VM became Running";

    // Restart on the same state directory.
    vmms_ = std::make_unique<VmmsInstance>(dir_.path(), worker.vmms_args);
    ASSERT_TRUE(vmms_->Start().ok()) << vmms_->Log();
    stub = Connect();
    std::vector<Vm> vms = List(*stub);
    ASSERT_EQ(vms.size(), size_t{kVms});
    int running = 0, off = 0;
    for (const Vm& vm : vms) {
      const std::string config =
          absl::StrCat("--config=", dir_.path(), "/vms/", vm.uuid(), "/");
      const std::vector<pid_t> workers = ProcessesMentioning(config);
      if (vm.state() == hvstack::v1::VM_STATE_RUNNING) {
        ++running;
        EXPECT_EQ(workers.size(), 1u) << vm.name() << " Running";
        EXPECT_GT(vm.worker_pid(), 0) << vm.name();
      } else {
        EXPECT_EQ(vm.state(), hvstack::v1::VM_STATE_OFF)
            << vm.name() << " is " << hvstack::v1::VmState_Name(vm.state())
            << ": " << vm.state_reason();
        ++off;
        EXPECT_FALSE(vm.state_reason().empty()) << vm.name();
        EXPECT_TRUE(workers.empty())
            << vm.name() << " is Off but a worker runs it";
      }
    }
    std::cerr << "after restart: " << running << " Running, " << off
              << " Off\n";
    for (const Vm& vm : vms) {
      if (vm.state() != hvstack::v1::VM_STATE_OFF) continue;
      std::cerr << "  " << vm.name() << ": " << vm.state_reason() << "\n";
    }

    // Every VM can be used again: the Off ones start, all of them stop.
    for (const Vm& vm : vms) {
      if (vm.state() == hvstack::v1::VM_STATE_OFF) {
        grpc::ClientContext ctx;
        hvstack::v1::StartVmRequest request;
        request.set_name(vm.name());
        Vm started;
        grpc::Status s = stub->StartVm(&ctx, request, &started);
        EXPECT_TRUE(s.ok()) << vm.name() << ": " << s.error_message();
      }
      grpc::ClientContext ctx;
      hvstack::v1::StopVmRequest stop;
      stop.set_name(vm.name());
      Vm stopped;
      grpc::Status s = stub->StopVm(&ctx, stop, &stopped);
      EXPECT_TRUE(s.ok()) << vm.name() << ": " << s.error_message();
      EXPECT_EQ(stopped.state(), hvstack::v1::VM_STATE_OFF);
    }
  }

  TempDir dir_;
  std::unique_ptr<VmmsInstance> vmms_;
};

TEST_F(KillDuringStartsTest, SandboxedWorkersOnKvm) {
  if (access("/dev/kvm", R_OK | W_OK) != 0)
    GTEST_SKIP() << "needs read/write access to /dev/kvm";
  Run({.vmms_args = {}, .kernel = Runfile("guest/idle.elf"), .cmdline = ""});
}

TEST_F(KillDuringStartsTest, StandInWorkersAnywhere) {
  Run({.vmms_args = {"--vmwp", Runfile("vmms/testing/fake_vmwp"),
                     "--no-sandbox", "--kvm-device", "/dev/null"},
       .kernel = Runfile("guest/hello.elf"),
       .cmdline = "serve"});
}

}  // namespace
}  // namespace hvtest
