// VmService end to end inside one process: a real vmms Server on a unix socket,
// a real SQLite database, and fake_vmwp (testing/fake_vmwp.cc) as the worker,
// so no KVM is needed.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "base/scoped_fd.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "vmms/runtime_paths.h"
#include "vmms/server.h"
#include "vmms/test_dir.h"
#include "vmms/test_kernels.h"
#include "vmms/vm_store.h"

extern char** environ;

namespace vmms {
namespace {

using hvstack::v1::VM_STATE_CRASHED;
using hvstack::v1::VM_STATE_OFF;
using hvstack::v1::VM_STATE_PAUSED;
using hvstack::v1::VM_STATE_RUNNING;
using hvstack::v1::VM_STATE_STARTING;
using hvstack::v1::VM_STATE_STOPPING;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class VmServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.state_dir = dir_.path() + "/st";
    options_.kvm_device = "/dev/null";  // Any openable file: the fake worker
                                        // only checks it is open.
    options_.vmwp =
        std::filesystem::absolute("vmms/testing/fake_vmwp").string();
    options_.start_timeout = absl::Seconds(2);
    // The fake worker exercises vmms's supervision, not the sandbox (it
    // would have to confine itself like vmwp); tests/integration:sandbox_test
    // covers the sandboxed start end to end with the real vmwp.
    options_.sandbox = false;
    StartServer();
  }

  void StartServer() {
    auto server = Server::Start(options_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel = grpc::CreateChannel("unix:" + server_->socket_path(),
                                       grpc::InsecureChannelCredentials());
    stub_ = hvstack::v1::VmService::NewStub(channel);
  }

  void StopServer() {
    stub_.reset();
    server_.reset();
  }

  static hvstack::v1::CreateVmRequest CreateRequest(
      const std::string& name, const std::string& cmdline = "poweroff",
      uint32_t vcpus = 1, uint64_t memory = 64,
      std::string kernel = testing::HelloKernel()) {
    hvstack::v1::CreateVmRequest request;
    request.set_name(name);
    request.mutable_config()->set_vcpus(vcpus);
    request.mutable_config()->set_memory_mib(memory);
    request.mutable_config()->set_kernel_path(kernel);
    request.mutable_config()->set_cmdline(cmdline);
    return request;
  }
  grpc::Status CreateFrom(const hvstack::v1::CreateVmRequest& request,
                          hvstack::v1::Vm* out = nullptr) {
    grpc::ClientContext context;
    hvstack::v1::Vm vm;
    return stub_->CreateVm(&context, request, out != nullptr ? out : &vm);
  }
  grpc::Status Create(const std::string& name,
                      const std::string& cmdline = "poweroff",
                      uint32_t vcpus = 1, uint64_t memory = 64,
                      std::string kernel = testing::HelloKernel(),
                      hvstack::v1::Vm* out = nullptr) {
    return CreateFrom(CreateRequest(name, cmdline, vcpus, memory, kernel), out);
  }

  template <typename Request, typename Method>
  grpc::Status CallByName(Method method, const std::string& name,
                          hvstack::v1::Vm* out = nullptr) {
    Request request;
    request.set_name(name);
    grpc::ClientContext context;
    hvstack::v1::Vm vm;
    return ((*stub_).*method)(&context, request, out != nullptr ? out : &vm);
  }
  grpc::Status Get(const std::string& name, hvstack::v1::Vm* out = nullptr) {
    return CallByName<hvstack::v1::GetVmRequest>(
        &hvstack::v1::VmService::Stub::GetVm, name, out);
  }
  grpc::Status Start(const std::string& name, hvstack::v1::Vm* out = nullptr) {
    return CallByName<hvstack::v1::StartVmRequest>(
        &hvstack::v1::VmService::Stub::StartVm, name, out);
  }
  grpc::Status Stop(const std::string& name, hvstack::v1::Vm* out = nullptr) {
    return CallByName<hvstack::v1::StopVmRequest>(
        &hvstack::v1::VmService::Stub::StopVm, name, out);
  }
  grpc::Status Delete(const std::string& name) {
    hvstack::v1::DeleteVmRequest request;
    request.set_name(name);
    grpc::ClientContext context;
    google::protobuf::Empty empty;
    return stub_->DeleteVm(&context, request, &empty);
  }
  grpc::Status Pause(const std::string& name, hvstack::v1::Vm* out = nullptr) {
    return CallByName<hvstack::v1::PauseVmRequest>(
        &hvstack::v1::VmService::Stub::PauseVm, name, out);
  }
  grpc::Status Resume(const std::string& name, hvstack::v1::Vm* out = nullptr) {
    return CallByName<hvstack::v1::ResumeVmRequest>(
        &hvstack::v1::VmService::Stub::ResumeVm, name, out);
  }
  grpc::Status Reset(const std::string& name, hvstack::v1::Vm* out = nullptr) {
    return CallByName<hvstack::v1::ResetVmRequest>(
        &hvstack::v1::VmService::Stub::ResetVm, name, out);
  }
  grpc::Status Reboot(const std::string& name, hvstack::v1::Vm* out = nullptr) {
    return CallByName<hvstack::v1::RebootVmRequest>(
        &hvstack::v1::VmService::Stub::RebootVm, name, out);
  }
  grpc::Status Shutdown(const std::string& name, absl::Duration timeout,
                        bool fail_fallback, hvstack::v1::Vm* out = nullptr,
                        absl::Duration rpc_deadline = absl::Seconds(30)) {
    hvstack::v1::ShutdownVmRequest request;
    request.set_name(name);
    request.mutable_timeout()->set_seconds(absl::ToInt64Seconds(timeout));
    request.mutable_timeout()->set_nanos(static_cast<int32_t>(
        absl::ToInt64Nanoseconds(timeout % absl::Seconds(1))));
    request.set_fallback(
        fail_fallback ? hvstack::v1::ShutdownVmRequest::FALLBACK_FAIL
                      : hvstack::v1::ShutdownVmRequest::FALLBACK_FORCE_OFF);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + rpc_deadline));
    hvstack::v1::Vm vm;
    return stub_->ShutdownVm(&context, request, out != nullptr ? out : &vm);
  }
  grpc::Status Update(const std::string& name,
                      const hvstack::v1::VmConfig& config,
                      const std::vector<std::string>& paths,
                      hvstack::v1::Vm* out = nullptr) {
    hvstack::v1::UpdateVmRequest request;
    request.set_name(name);
    *request.mutable_config() = config;
    for (const std::string& p : paths)
      request.mutable_update_mask()->add_paths(p);
    grpc::ClientContext context;
    hvstack::v1::Vm vm;
    return stub_->UpdateVm(&context, request, out != nullptr ? out : &vm);
  }
  // Reads the console stream to its end (or `max_bytes`, then cancels).
  grpc::Status Console(const std::string& name, bool follow, std::string* data,
                       size_t max_bytes = 1 << 20) {
    hvstack::v1::StreamConsoleRequest request;
    request.set_name(name);
    request.set_follow(follow);
    grpc::ClientContext context;
    auto reader = stub_->StreamConsole(&context, request);
    hvstack::v1::ConsoleChunk chunk;
    while (data->size() < max_bytes && reader->Read(&chunk))
      *data += chunk.data();
    if (data->size() >= max_bytes) context.TryCancel();
    grpc::Status status = reader->Finish();
    return data->size() >= max_bytes ? grpc::Status::OK : status;
  }

  // Polls until the VM is in `state` (workers end asynchronously).
  hvstack::v1::Vm WaitForState(const std::string& name,
                               hvstack::v1::VmState state) {
    hvstack::v1::Vm vm;
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      if (Get(name, &vm).ok() && vm.state() == state) return vm;
      absl::SleepFor(absl::Milliseconds(10));
    }
    ADD_FAILURE() << name << " never reached " << StateName(state)
                  << "; last: " << vm.DebugString();
    return vm;
  }

  std::vector<VmState> StateHistory(const std::string& uuid) {
    // A second connection to the database, as the sqlite3 CLI would have: WAL
    // allows it.
    auto store = VmStore::Open(options_.state_dir + "/vmms.db");
    absl::StatusOr<std::vector<StateChange>> history = (*store)->History(uuid);
    std::vector<VmState> states;
    for (const StateChange& change : *history) states.push_back(change.to);
    return states;
  }

  testing::TestDir dir_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<hvstack::v1::VmService::Stub> stub_;
};

void ExpectError(const grpc::Status& status, grpc::StatusCode code,
                 const std::string& text) {
  EXPECT_EQ(status.error_code(), code) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr(text));
}

TEST_F(VmServiceTest, CreateValidatesEveryField) {
  ExpectError(Create("Bad_Name"), grpc::StatusCode::INVALID_ARGUMENT,
              "[a-z0-9-]");
  ExpectError(Create(""), grpc::StatusCode::INVALID_ARGUMENT,
              "1-63 characters");
  ExpectError(Create("web1", "", 0), grpc::StatusCode::INVALID_ARGUMENT,
              "between 1 and 64");
  ExpectError(Create("web1", "", 65), grpc::StatusCode::INVALID_ARGUMENT,
              "between 1 and 64");
  ExpectError(Create("web1", "", 1, 15), grpc::StatusCode::INVALID_ARGUMENT,
              "between 16 and 65536 MiB");
  ExpectError(Create("web1", "", 1, 65537), grpc::StatusCode::INVALID_ARGUMENT,
              "between 16 and 65536 MiB");
  ExpectError(Create("web1", "", 1, 64, "hello.elf"),
              grpc::StatusCode::INVALID_ARGUMENT,
              "'hello.elf' is not an absolute path");
  const std::string missing = dir_.path() + "/no-kernel";
  ExpectError(Create("web1", "", 1, 64, missing),
              grpc::StatusCode::INVALID_ARGUMENT, missing);
  const std::string text =
      testing::WriteFile(dir_.path() + "/text", std::string(200, 'x'));
  ExpectError(Create("web1", "", 1, 64, text),
              grpc::StatusCode::INVALID_ARGUMENT, "not an ELF");

  hvstack::v1::Vm vm;
  ASSERT_TRUE(
      Create("web1", "poweroff", 2, 128, testing::HelloKernel(), &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_OFF);
  EXPECT_EQ(vm.state_reason(), "created");
  EXPECT_EQ(vm.uuid().size(), 36u);
  EXPECT_EQ(vm.uuid()[14], '4');  // Version 4.
  ExpectError(Create("web1"), grpc::StatusCode::ALREADY_EXISTS,
              "'web1' already exists");
}

TEST_F(VmServiceTest, UnknownVmIsNotFoundEverywhere) {
  ExpectError(Get("ghost"), grpc::StatusCode::NOT_FOUND,
              "VM 'ghost' not found");
  ExpectError(Start("ghost"), grpc::StatusCode::NOT_FOUND,
              "VM 'ghost' not found");
  ExpectError(Stop("ghost"), grpc::StatusCode::NOT_FOUND,
              "VM 'ghost' not found");
  ExpectError(Delete("ghost"), grpc::StatusCode::NOT_FOUND,
              "VM 'ghost' not found");
  std::string data;
  ExpectError(Console("ghost", false, &data), grpc::StatusCode::NOT_FOUND,
              "VM 'ghost' not found");
  // A name that cannot exist is a bad request, not a missing VM.
  ExpectError(Get("NO"), grpc::StatusCode::INVALID_ARGUMENT, "[a-z0-9-]");
}

TEST_F(VmServiceTest, ListReturnsAllVmsByName) {
  ASSERT_TRUE(Create("b").ok());
  ASSERT_TRUE(Create("a").ok());
  grpc::ClientContext context;
  hvstack::v1::ListVmsResponse response;
  ASSERT_TRUE(
      stub_->ListVms(&context, hvstack::v1::ListVmsRequest(), &response).ok());
  ASSERT_EQ(response.vms_size(), 2);
  EXPECT_EQ(response.vms(0).name(), "a");
  EXPECT_EQ(response.vms(1).name(), "b");
}

TEST_F(VmServiceTest, WrongStatesAreFailedPreconditionNamingTheState) {
  ASSERT_TRUE(Create("web1", "serve").ok());
  ExpectError(Stop("web1"), grpc::StatusCode::FAILED_PRECONDITION,
              "VM 'web1' is off");
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Start("web1", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_RUNNING);
  ExpectError(Start("web1"), grpc::StatusCode::FAILED_PRECONDITION,
              "is running");
  ExpectError(Delete("web1"), grpc::StatusCode::FAILED_PRECONDITION,
              "is running");
  ASSERT_TRUE(Stop("web1").ok());
  ExpectError(Stop("web1"), grpc::StatusCode::FAILED_PRECONDITION, "is off");
}

TEST_F(VmServiceTest, FastPowerOffIsRecordedInOrder) {
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Create("hello", "poweroff").ok());
  grpc::Status status = Start("hello", &vm);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(vm.state(), VM_STATE_RUNNING);
  EXPECT_EQ(vm.state_reason(), "worker ready");
  EXPECT_GT(vm.worker_pid(), 0);
  vm = WaitForState("hello", VM_STATE_OFF);
  EXPECT_EQ(vm.state_reason(), "guest powered off");
  EXPECT_EQ(vm.worker_pid(), 0);
  EXPECT_THAT(StateHistory(vm.uuid()),
              ElementsAre(VM_STATE_OFF, VM_STATE_STARTING, VM_STATE_RUNNING,
                          VM_STATE_OFF));

  // No worker now: the retained log.
  std::string console;
  ASSERT_TRUE(Console("hello", true, &console).ok());
  EXPECT_EQ(console, "hello\n");
  // And it can start again.
  ASSERT_TRUE(Start("hello").ok());
  WaitForState("hello", VM_STATE_OFF);
}

TEST_F(VmServiceTest, StopPowersTheWorkerOffAndRecordsOff) {
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Create("web1", "serve").ok());
  ASSERT_TRUE(Start("web1", &vm).ok());
  ASSERT_TRUE(Stop("web1", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_OFF);
  EXPECT_EQ(vm.state_reason(), "stopped by user (hard power-off)");
  EXPECT_EQ(vm.worker_pid(), 0);
  EXPECT_THAT(StateHistory(vm.uuid()),
              ElementsAre(VM_STATE_OFF, VM_STATE_STARTING, VM_STATE_RUNNING,
                          VM_STATE_STOPPING, VM_STATE_OFF));
}

TEST_F(VmServiceTest, StopKillsAWorkerThatDoesNotAnswer) {
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Create("deaf", "serve-deaf").ok());
  ASSERT_TRUE(Start("deaf", &vm).ok());
  ASSERT_TRUE(Stop("deaf", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_OFF);
  EXPECT_EQ(vm.state_reason(), "stopped by user (hard power-off)");
}

TEST_F(VmServiceTest, ConsoleFollowsARunningWorkerUntilTheClientLeaves) {
  ASSERT_TRUE(Create("web1", "serve").ok());
  ASSERT_TRUE(Start("web1").ok());
  std::string data;
  ASSERT_TRUE(Console("web1", true, &data, 40).ok());
  EXPECT_THAT(data, ::testing::StartsWith("booted\ntick 0\n"));
  data.clear();
  ASSERT_TRUE(Console("web1", false, &data).ok());
  EXPECT_EQ(data, "booted\n");
  ASSERT_TRUE(Stop("web1").ok());
}

TEST_F(VmServiceTest, GuestCrashIsRecorded) {
  ASSERT_TRUE(Create("crash", "guest-crash").ok());
  ASSERT_TRUE(Start("crash").ok());
  hvstack::v1::Vm vm = WaitForState("crash", VM_STATE_CRASHED);
  EXPECT_EQ(vm.state_reason(), "guest crashed: triple fault");
  // Crashed VMs can be started again and deleted.
  ASSERT_TRUE(Delete("crash").ok());
  EXPECT_FALSE(std::filesystem::exists(
      RuntimePathsFor(options_.state_dir, vm.uuid()).dir));
}

TEST_F(VmServiceTest, WorkerKilledBySignalIsCrashed) {
  ASSERT_TRUE(Create("segv", "segv").ok());
  ASSERT_TRUE(Start("segv").ok());
  hvstack::v1::Vm vm = WaitForState("segv", VM_STATE_CRASHED);
  EXPECT_EQ(vm.state_reason(), "worker killed by signal 11 (SIGSEGV)");
}

TEST_F(VmServiceTest, WorkerStartupErrorIsReturnedWithItsCode) {
  ASSERT_TRUE(Create("err", "worker-error").ok());
  ExpectError(Start("err"), grpc::StatusCode::FAILED_PRECONDITION,
              "worker failed to start: kernel does not fit");
  hvstack::v1::Vm vm = WaitForState("err", VM_STATE_OFF);
  EXPECT_EQ(vm.state_reason(), "worker failed to start: kernel does not fit");

  ASSERT_TRUE(Create("early", "die-early").ok());
  ExpectError(Start("early"), grpc::StatusCode::INTERNAL,
              "worker exited with status 3");
  EXPECT_EQ(WaitForState("early", VM_STATE_OFF).state_reason(),
            "worker failed to start: worker exited with status 3");
}

TEST_F(VmServiceTest, WorkerThatNeverGetsReadyTimesOut) {
  ASSERT_TRUE(Create("slow", "never-ready").ok());
  ExpectError(Start("slow"), grpc::StatusCode::DEADLINE_EXCEEDED,
              "did not become ready");
  EXPECT_THAT(WaitForState("slow", VM_STATE_OFF).state_reason(),
              HasSubstr("did not become ready"));
}

TEST_F(VmServiceTest, StopWhileStartingAbortsTheStart) {
  ASSERT_TRUE(Create("slow", "never-ready").ok());
  grpc::Status start_status;
  std::thread starter([&] { start_status = Start("slow"); });
  WaitForState("slow", VM_STATE_STARTING);
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Stop("slow", &vm).ok());
  starter.join();
  EXPECT_EQ(vm.state(), VM_STATE_OFF);
  ExpectError(start_status, grpc::StatusCode::ABORTED, "stopped");
}

TEST_F(VmServiceTest, MissingKvmDeviceLeavesTheVmOffWithTheReason) {
  StopServer();
  options_.kvm_device = dir_.path() + "/kvm";
  StartServer();
  ASSERT_TRUE(Create("web1").ok());
  ExpectError(Start("web1"), grpc::StatusCode::FAILED_PRECONDITION,
              "cannot open " + options_.kvm_device +
                  ": No such file or directory; is KVM available and are you "
                  "in the kvm group?");
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Get("web1", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_OFF);
  EXPECT_THAT(vm.state_reason(), HasSubstr("cannot open"));
}

TEST_F(VmServiceTest, DefinitionsSurviveARestart) {
  hvstack::v1::Vm created;
  ASSERT_TRUE(
      Create("web1", "poweroff", 3, 512, testing::HelloKernel(), &created)
          .ok());
  StopServer();
  StartServer();
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Get("web1", &vm).ok());
  EXPECT_EQ(vm.uuid(), created.uuid());
  EXPECT_EQ(vm.config().vcpus(), 3u);
  EXPECT_EQ(vm.config().memory_mib(), 512u);
  EXPECT_EQ(vm.config().cmdline(), "poweroff");
}

TEST_F(VmServiceTest, ShutdownStopsRunningWorkers) {
  ASSERT_TRUE(Create("web1", "serve").ok());
  ASSERT_TRUE(Start("web1").ok());
  StopServer();
  StartServer();
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Get("web1", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_OFF);
  EXPECT_EQ(vm.state_reason(), "vmms shut down (hard power-off)");
}

TEST_F(VmServiceTest, RestartRecordsWorkersThatAreGoneOrNotOurs) {
  hvstack::v1::Vm gone, imposter;
  ASSERT_TRUE(
      Create("gone", "serve", 1, 64, testing::HelloKernel(), &gone).ok());
  ASSERT_TRUE(
      Create("imposter", "serve", 1, 64, testing::HelloKernel(), &imposter)
          .ok());
  StopServer();

  // A live process at the recorded pid that is not the worker vmms spawned
  // (no start time recorded for it, no worker socket): a recycled pid. It
  // must be left alone.
  std::string runtime_dir =
      RuntimePathsFor(options_.state_dir, imposter.uuid()).dir;
  std::vector<std::string> args = {"/bin/sh", "-c", "sleep 60", runtime_dir};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  ASSERT_EQ(
      posix_spawn(&pid, "/bin/sh", nullptr, nullptr, argv.data(), environ), 0);
  {
    auto store = *VmStore::Open(options_.state_dir + "/vmms.db");
    for (const Vm* vm : {&gone, &imposter}) {
      ASSERT_TRUE(store->SetState(vm->uuid(), VM_STATE_STARTING, "start").ok());
    }
    // Pid 0x7ffffffe is (almost certainly) not running.
    ASSERT_TRUE(store
                    ->SetState(gone.uuid(), VM_STATE_RUNNING, "worker ready",
                               0x7ffffffe)
                    .ok());
    ASSERT_TRUE(
        store->SetState(imposter.uuid(), VM_STATE_RUNNING, "worker ready", pid)
            .ok());
  }
  StartServer();
  EXPECT_EQ(waitpid(pid, nullptr, WNOHANG), 0) << "the imposter was killed";
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);

  hvstack::v1::Vm vm;
  ASSERT_TRUE(Get("gone", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_CRASHED);
  EXPECT_EQ(vm.state_reason(), "worker exited while vmms was down");
  EXPECT_EQ(vm.worker_pid(), 0);
  ASSERT_TRUE(Get("imposter", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_CRASHED);
  EXPECT_EQ(vm.state_reason(), "worker exited while vmms was down");
}

TEST_F(VmServiceTest, OneVmmsPerStateDirectory) {
  auto second = Server::Start(options_);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("another vmms"));
}

TEST(ServerTest, TooLongSocketPathIsAClearError) {
  testing::TestDir dir;
  ServerOptions options;
  options.state_dir = dir.path() + "/" + std::string(100, 'd');
  auto server = Server::Start(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(), HasSubstr("at most 107 bytes"));
  EXPECT_FALSE(std::filesystem::exists(options.state_dir));  // Nothing made.
}

grpc::Status CreateWithInitrd(hvstack::v1::VmService::Stub& stub,
                              const std::string& name,
                              const std::string& initrd, hvstack::v1::Vm* out) {
  hvstack::v1::CreateVmRequest request;
  request.set_name(name);
  request.mutable_config()->set_vcpus(1);
  request.mutable_config()->set_memory_mib(64);
  request.mutable_config()->set_kernel_path(testing::HelloKernel());
  request.mutable_config()->set_cmdline("serve");
  request.mutable_config()->set_initrd_path(initrd);
  grpc::ClientContext context;
  return stub.CreateVm(&context, request, out);
}

TEST_F(VmServiceTest, InitrdMustBeAReadableRegularFile) {
  hvstack::v1::Vm vm;
  const std::string missing = dir_.path() + "/no-initrd";
  ExpectError(CreateWithInitrd(*stub_, "web1", missing, &vm),
              grpc::StatusCode::INVALID_ARGUMENT,
              "config.initrd_path '" + missing + "' cannot be used");
  ExpectError(CreateWithInitrd(*stub_, "web1", dir_.path(), &vm),
              grpc::StatusCode::INVALID_ARGUMENT, "is not a regular file");
  ExpectError(CreateWithInitrd(*stub_, "web1", "initrd.img", &vm),
              grpc::StatusCode::INVALID_ARGUMENT, "not an absolute path");

  const std::string initrd = dir_.path() + "/initrd.img";
  { std::ofstream(initrd) << "070701"; }
  ASSERT_TRUE(CreateWithInitrd(*stub_, "web1", initrd, &vm).ok());
  EXPECT_EQ(vm.config().initrd_path(), initrd);
  ASSERT_TRUE(Get("web1", &vm).ok());
  EXPECT_EQ(vm.config().initrd_path(), initrd) << "stored";

  // Checked again at start: the file may have gone.
  std::filesystem::remove(initrd);
  ExpectError(Start("web1"), grpc::StatusCode::INVALID_ARGUMENT,
              "config.initrd_path '" + initrd + "' cannot be used");
  ASSERT_TRUE(Get("web1", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_OFF);
}

TEST_F(VmServiceTest, InitrdReachesTheWorkerConfig) {
  const std::string initrd = dir_.path() + "/initrd.img";
  { std::ofstream(initrd) << "070701"; }
  hvstack::v1::Vm vm;
  ASSERT_TRUE(CreateWithInitrd(*stub_, "web1", initrd, &vm).ok());
  ASSERT_TRUE(Start("web1", &vm).ok());
  hvstack::internal::WorkerConfig config;
  {
    std::ifstream in(RuntimePathsFor(options_.state_dir, vm.uuid()).dir +
                         "/worker_config.pb",
                     std::ios::binary);
    ASSERT_TRUE(config.ParseFromIstream(&in));
  }
  EXPECT_EQ(config.initrd_path(), initrd);
  const RuntimePaths paths = RuntimePathsFor(options_.state_dir, vm.uuid());
  EXPECT_EQ(config.console_log_path(), paths.console_log);
  EXPECT_EQ(config.exit_report_path(), paths.exit_report);
  ASSERT_TRUE(Stop("web1").ok());
}

TEST_F(VmServiceTest, GuestRebootsAreFreshWorkersCountedAndRecorded) {
  // The fake resets twice (each boot exits REBOOT_REQUESTED, as vmwp does on
  // a guest reset), counting its boots in the CMOS RAM vmms hands on.
  ASSERT_TRUE(Create("rb", "reboot").ok());
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Start("rb", &vm).ok());
  const int64_t first_pid = vm.worker_pid();
  const std::string console_log =
      RuntimePathsFor(options_.state_dir, vm.uuid()).console_log;
  auto read_log = [&] {
    std::ifstream in(console_log, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)),
                       std::istreambuf_iterator<char>());
  };
  // Until the third worker has started its boot (it writes "boot 2" first).
  auto await_third_boot = [&] {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      if (!Get("rb", &vm).ok()) return;
      if (vm.reboot_count() == 2 && absl::StrContains(read_log(), "boot 2\n")) {
        return;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
  };
  await_third_boot();
  EXPECT_EQ(vm.reboot_count(), 2u);
  EXPECT_EQ(vm.state(), VM_STATE_RUNNING);
  EXPECT_EQ(vm.state_reason(), "guest rebooted: fake reset");
  EXPECT_NE(vm.worker_pid(), first_pid) << "a fresh worker serves the VM";
  EXPECT_THAT(StateHistory(vm.uuid()),
              ElementsAre(VM_STATE_OFF, VM_STATE_STARTING, VM_STATE_RUNNING,
                          VM_STATE_RUNNING, VM_STATE_RUNNING));
  {
    auto store = *VmStore::Open(options_.state_dir + "/vmms.db");
    std::vector<std::string> reasons;
    auto history = *store->History(vm.uuid());
    for (const StateChange& c : history) reasons.push_back(c.reason);
    EXPECT_EQ(std::count(reasons.begin(), reasons.end(),
                         "guest rebooted: fake reset"),
              2);
  }
  // The fresh workers got the CMOS state (the fake's third boot serves only
  // when it saw two boots) and continued the console log.
  EXPECT_EQ(read_log(), "boot 0\nboot 1\nboot 2\n");
  ASSERT_TRUE(Stop("rb", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_OFF);
  EXPECT_EQ(vm.reboot_count(), 2u) << "kept after the VM stops";
  // A new start counts from 0 again and starts without the CMOS state (the
  // fake resets twice again) and with a fresh console log.
  ASSERT_TRUE(Start("rb", &vm).ok());
  EXPECT_EQ(vm.reboot_count(), 0u);
  await_third_boot();
  EXPECT_EQ(vm.reboot_count(), 2u);
  EXPECT_EQ(read_log(), "boot 0\nboot 1\nboot 2\n");
  ASSERT_TRUE(Stop("rb").ok());
}

TEST_F(VmServiceTest, RebootLoopGuardCrashesTheVm) {
  // Every boot resets at once: vmms respawns up to the guard's limit (10
  // within 60 s), then records the VM Crashed instead of an 11th worker.
  ASSERT_TRUE(Create("loop", "reboot-loop").ok());
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Start("loop", &vm).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    ASSERT_TRUE(Get("loop", &vm).ok());
    if (vm.state() == VM_STATE_CRASHED) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(vm.state(), VM_STATE_CRASHED) << vm.state_reason();
  EXPECT_EQ(vm.state_reason(),
            "guest crashed: reboot loop: 11 reboots within 1m (limit 10); "
            "last: fake reset");
  EXPECT_EQ(vm.reboot_count(), 10u);
  EXPECT_EQ(vm.worker_pid(), 0);
  std::vector<hvstack::v1::VmState> expected = {VM_STATE_OFF, VM_STATE_STARTING,
                                                VM_STATE_RUNNING};
  expected.insert(expected.end(), 10, VM_STATE_RUNNING);
  expected.push_back(VM_STATE_CRASHED);
  EXPECT_THAT(StateHistory(vm.uuid()), ::testing::ElementsAreArray(expected));
  // A client's start gets a fresh guard, which stops the loop again.
  ASSERT_TRUE(Start("loop", &vm).ok());
  const absl::Time again = absl::Now() + absl::Seconds(20);
  while (absl::Now() < again) {
    ASSERT_TRUE(Get("loop", &vm).ok());
    if (vm.state() == VM_STATE_CRASHED) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(vm.state(), VM_STATE_CRASHED);
  EXPECT_EQ(vm.reboot_count(), 10u);
}

TEST_F(VmServiceTest, AttachConsoleForwardsInputAndEndsWhenTheClientDetaches) {
  ASSERT_TRUE(Create("con", "serve").ok());
  ASSERT_TRUE(Start("con").ok());
  grpc::ClientContext context;
  auto stream = stub_->AttachConsole(&context);
  hvstack::v1::AttachConsoleRequest request;
  request.set_name("con");
  request.set_data("hi there");
  ASSERT_TRUE(stream->Write(request));
  std::string seen;
  hvstack::v1::ConsoleChunk chunk;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (seen.find("echo: hi there") == std::string::npos &&
         absl::Now() < deadline && stream->Read(&chunk)) {
    seen += chunk.data();
  }
  EXPECT_THAT(seen, HasSubstr("booted\n"));
  EXPECT_THAT(seen, HasSubstr("echo: hi there"));
  ASSERT_TRUE(stream->WritesDone());
  while (stream->Read(&chunk)) {
  }
  EXPECT_TRUE(stream->Finish().ok());
  ASSERT_TRUE(Stop("con").ok());
}

TEST_F(VmServiceTest, AttachConsoleSendsEndedWhenTheVmStops) {
  ASSERT_TRUE(Create("con", "serve").ok());
  ASSERT_TRUE(Start("con").ok());
  grpc::ClientContext context;
  auto stream = stub_->AttachConsole(&context);
  hvstack::v1::AttachConsoleRequest request;
  request.set_name("con");
  ASSERT_TRUE(stream->Write(request));
  hvstack::v1::ConsoleChunk chunk;
  ASSERT_TRUE(stream->Read(&chunk));
  std::thread stopper([this] { EXPECT_TRUE(Stop("con").ok()); });
  bool ended = false;
  while (stream->Read(&chunk)) {
    if (chunk.ended()) {
      ended = true;
      stream->WritesDone();
    }
  }
  EXPECT_TRUE(ended);
  EXPECT_TRUE(stream->Finish().ok());
  stopper.join();
}

TEST_F(VmServiceTest, AttachConsoleOfAStoppedVmSendsTheLogAndEnded) {
  ASSERT_TRUE(Create("off1", "poweroff").ok());
  ASSERT_TRUE(Start("off1").ok());
  WaitForState("off1", VM_STATE_OFF);
  grpc::ClientContext context;
  auto stream = stub_->AttachConsole(&context);
  hvstack::v1::AttachConsoleRequest request;
  request.set_name("off1");
  ASSERT_TRUE(stream->Write(request));
  std::string seen;
  bool ended = false;
  hvstack::v1::ConsoleChunk chunk;
  while (stream->Read(&chunk)) {
    seen += chunk.data();
    if (chunk.ended()) {
      ended = true;
      stream->WritesDone();
    }
  }
  EXPECT_EQ(seen, "hello\n");
  EXPECT_TRUE(ended);
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(VmServiceTest, AttachConsoleOfAnUnknownVmIsNotFound) {
  grpc::ClientContext context;
  auto stream = stub_->AttachConsole(&context);
  hvstack::v1::AttachConsoleRequest request;
  request.set_name("nope");
  ASSERT_TRUE(stream->Write(request));
  hvstack::v1::ConsoleChunk chunk;
  EXPECT_FALSE(stream->Read(&chunk));
  ExpectError(stream->Finish(), grpc::StatusCode::NOT_FOUND, "'nope'");
}

TEST_F(VmServiceTest, PauseAndResumeFollowTheStateTable) {
  ASSERT_TRUE(Create("web1", "serve").ok());
  ExpectError(Pause("web1"), grpc::StatusCode::FAILED_PRECONDITION,
              "VM 'web1' is off; cannot pause it: start it first");
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Start("web1", &vm).ok());
  const int64_t pid = vm.worker_pid();
  ExpectError(Resume("web1"), grpc::StatusCode::FAILED_PRECONDITION,
              "is running; cannot resume it: it is not paused");
  grpc::Status paused = Pause("web1", &vm);
  ASSERT_TRUE(paused.ok()) << paused.error_message();
  EXPECT_EQ(vm.state(), VM_STATE_PAUSED);
  EXPECT_EQ(vm.state_reason(), "paused by user");
  EXPECT_EQ(vm.worker_pid(), pid);
  ExpectError(Pause("web1"), grpc::StatusCode::FAILED_PRECONDITION,
              "is paused; cannot pause it: it is paused already");
  ExpectError(Shutdown("web1", absl::Seconds(1), false),
              grpc::StatusCode::FAILED_PRECONDITION,
              "VM 'web1' is paused; cannot shut it down: resume it first");
  ExpectError(Reboot("web1"), grpc::StatusCode::FAILED_PRECONDITION,
              "resume it first");
  ExpectError(Delete("web1"), grpc::StatusCode::FAILED_PRECONDITION,
              "is paused; cannot delete it: stop it first");
  ASSERT_TRUE(Resume("web1", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_RUNNING);
  EXPECT_EQ(vm.state_reason(), "resumed by user");
  // Stop works from Paused too.
  ASSERT_TRUE(Pause("web1").ok());
  ASSERT_TRUE(Stop("web1", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_OFF);
  EXPECT_THAT(StateHistory(vm.uuid()),
              ElementsAre(VM_STATE_OFF, VM_STATE_STARTING, VM_STATE_RUNNING,
                          VM_STATE_PAUSED, VM_STATE_RUNNING, VM_STATE_PAUSED,
                          VM_STATE_STOPPING, VM_STATE_OFF));
}

TEST_F(VmServiceTest, ShutdownWithoutAShutdownChannelFallsBackByPolicy) {
  ASSERT_TRUE(Create("web1", "serve").ok());
  ASSERT_TRUE(Start("web1").ok());
  ExpectError(Shutdown("web1", absl::Seconds(5), /*fail_fallback=*/true),
              grpc::StatusCode::FAILED_PRECONDITION,
              "guest offers no shutdown channel; it keeps running");
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Get("web1", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_RUNNING);
  ASSERT_TRUE(Shutdown("web1", absl::Seconds(5), false, &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_OFF);
  EXPECT_EQ(vm.state_reason(),
            "shutdown requested by user: guest offers no shutdown channel; "
            "forced off");
  // Bad timeouts are INVALID_ARGUMENT.
  ExpectError(Shutdown("web1", absl::Hours(2), false),
              grpc::StatusCode::INVALID_ARGUMENT, "1 ms to 1 h");
  ExpectError(Shutdown("web1", absl::ZeroDuration(), false),
              grpc::StatusCode::INVALID_ARGUMENT, "out of range");
}

TEST_F(VmServiceTest, ShutdownWaitsForTheGuestThenFallsBack) {
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Create("obeys", "shutdown-obeys").ok());
  ASSERT_TRUE(Start("obeys").ok());
  ASSERT_TRUE(Shutdown("obeys", absl::Seconds(5), true, &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_OFF);
  EXPECT_EQ(vm.state_reason(), "guest powered off");

  ASSERT_TRUE(Create("ignores", "shutdown-ignores").ok());
  ASSERT_TRUE(Start("ignores").ok());
  ExpectError(Shutdown("ignores", absl::Milliseconds(200), true),
              grpc::StatusCode::DEADLINE_EXCEEDED,
              "did not power off within 200ms; it keeps running");
  ASSERT_TRUE(Get("ignores", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_RUNNING);
  ASSERT_TRUE(Shutdown("ignores", absl::Milliseconds(200), false, &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_OFF);
  EXPECT_EQ(vm.state_reason(),
            "shutdown requested by user: the guest did not power off within "
            "200ms; forced off");
}

TEST_F(VmServiceTest, ResetAndRebootWithoutChannelGiveAFreshWorker) {
  ASSERT_TRUE(Create("web1", "serve").ok());
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Start("web1", &vm).ok());
  const int64_t first = vm.worker_pid();
  grpc::Status reset = Reset("web1", &vm);
  ASSERT_TRUE(reset.ok()) << reset.error_message();
  EXPECT_EQ(vm.state(), VM_STATE_RUNNING);
  EXPECT_NE(vm.worker_pid(), first);
  EXPECT_EQ(kill(static_cast<pid_t>(first), 0), -1) << "old worker survived";
  const int64_t second = vm.worker_pid();
  ASSERT_TRUE(Reboot("web1", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_RUNNING);
  EXPECT_NE(vm.worker_pid(), second);
  // A paused VM can be reset too; it comes back running.
  ASSERT_TRUE(Pause("web1").ok());
  ASSERT_TRUE(Reset("web1", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_RUNNING);
  auto store = *VmStore::Open(options_.state_dir + "/vmms.db");
  auto history = *store->History(vm.uuid());
  std::vector<std::string> reasons;
  for (const StateChange& c : history) reasons.push_back(c.reason);
  // The VM stayed Running throughout: each reset is a fresh worker for a
  // running VM (RespawnWorker), recorded as an in-place reboot.
  EXPECT_THAT(reasons,
              ::testing::Contains("guest rebooted: reset by user (hard)"));
  EXPECT_THAT(reasons, ::testing::Contains(
                           "guest rebooted: reboot requested by user: guest "
                           "offers no shutdown channel; hard reset"));
  EXPECT_EQ(vm.reboot_count(), 3u);
  EXPECT_THAT(StateHistory(vm.uuid()),
              ElementsAre(VM_STATE_OFF, VM_STATE_STARTING, VM_STATE_RUNNING,
                          VM_STATE_RUNNING, VM_STATE_RUNNING, VM_STATE_PAUSED,
                          VM_STATE_RUNNING, VM_STATE_RUNNING));
  // Reset of a stopped VM is refused.
  ASSERT_TRUE(Stop("web1").ok());
  ExpectError(Reset("web1"), grpc::StatusCode::FAILED_PRECONDITION,
              "is off; cannot reset it");
}

TEST_F(VmServiceTest, UpdateChangesMaskedFieldsAndHardwareOnlyWhileOff) {
  ASSERT_TRUE(Create("web1", "serve").ok());
  hvstack::v1::VmConfig config;
  config.set_memory_mib(256);
  config.set_vcpus(99);  // Not in the mask.
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Update("web1", config, {"memory_mib"}, &vm).ok());
  EXPECT_EQ(vm.config().memory_mib(), 256u);
  EXPECT_EQ(vm.config().vcpus(), 1u);
  ExpectError(Update("web1", config, {}), grpc::StatusCode::INVALID_ARGUMENT,
              "update_mask is empty");
  ExpectError(Update("web1", config, {"name"}),
              grpc::StatusCode::INVALID_ARGUMENT,
              "'name' is not an updatable field");
  ExpectError(Update("web1", config, {"vcpus"}),
              grpc::StatusCode::INVALID_ARGUMENT, "config.vcpus 99");
  ExpectError(Update("web1", config, {"memory_mib", "memory_mib"}),
              grpc::StatusCode::INVALID_ARGUMENT, "twice");
  config.set_restart_policy(static_cast<hvstack::v1::RestartPolicy>(42));
  ExpectError(Update("web1", config, {"restart_policy"}),
              grpc::StatusCode::INVALID_ARGUMENT, "restart_policy 42");
  ExpectError(Update("ghost", config, {"autostart"}),
              grpc::StatusCode::NOT_FOUND, "'ghost'");

  ASSERT_TRUE(Start("web1").ok());
  config.set_memory_mib(512);
  ExpectError(Update("web1", config, {"memory_mib"}),
              grpc::StatusCode::FAILED_PRECONDITION,
              "is running; cannot change its hardware configuration: stop it "
              "first");
  config.set_autostart(true);
  config.set_restart_policy(hvstack::v1::RESTART_POLICY_ALWAYS);
  ASSERT_TRUE(
      Update("web1", config, {"autostart", "restart_policy"}, &vm).ok());
  EXPECT_TRUE(vm.config().autostart());
  EXPECT_EQ(vm.config().memory_mib(), 256u);
  EXPECT_EQ(vm.state(), VM_STATE_RUNNING);
}

TEST_F(VmServiceTest, ASecondModifierWaitsUntilItsDeadlineAndReadsNeverWait) {
  ASSERT_TRUE(Create("web1", "shutdown-ignores").ok());
  ASSERT_TRUE(Start("web1").ok());
  // Holds web1's operation lock for ~1.5 s.
  std::thread shutdown([&] {
    EXPECT_EQ(Shutdown("web1", absl::Milliseconds(1500), true).error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
  });
  absl::SleepFor(absl::Milliseconds(200));
  {
    hvstack::v1::PauseVmRequest request;
    request.set_name("web1");
    grpc::ClientContext context;
    context.set_deadline(
        absl::ToChronoTime(absl::Now() + absl::Milliseconds(300)));
    hvstack::v1::Vm vm;
    grpc::Status s = stub_->PauseVm(&context, request, &vm);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    // vmms's own answer names the operation in progress (the client's
    // deadline may fire first with gRPC's own message).
    if (!s.error_message().empty() &&
        s.error_message() != "Deadline Exceeded") {
      EXPECT_THAT(s.error_message(), HasSubstr("operation 'shutdown'"));
    }
  }
  // Reads do not wait, nor does another VM.
  absl::Time before = absl::Now();
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Get("web1", &vm).ok());
  EXPECT_LT(absl::Now() - before, absl::Milliseconds(500));
  ASSERT_TRUE(Create("other", "serve").ok());
  ASSERT_TRUE(Start("other").ok());
  shutdown.join();
  // After the first operation, the next one proceeds.
  grpc::Status paused = Pause("web1", &vm);
  EXPECT_TRUE(paused.ok()) << paused.error_message();
}

TEST_F(VmServiceTest, RestartPolicyRestartsACrashedVmWithBackoff) {
  StopServer();
  options_.restart_backoff = absl::Milliseconds(100);
  StartServer();
  hvstack::v1::CreateVmRequest request = CreateRequest("flaky", "segv");
  request.mutable_config()->set_restart_policy(
      hvstack::v1::RESTART_POLICY_ON_FAILURE);
  ASSERT_TRUE(CreateFrom(request).ok());
  ASSERT_TRUE(Start("flaky").ok());
  // segv crashes at once each time: restarts after 100, 200, 400 ms...
  hvstack::v1::Vm vm;
  for (absl::Time deadline = absl::Now() + absl::Seconds(10);
       absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(20))) {
    ASSERT_TRUE(Get("flaky", &vm).ok());
    if (vm.restart_count() >= 3) break;
  }
  EXPECT_GE(vm.restart_count(), 3u);
  auto store = *VmStore::Open(options_.state_dir + "/vmms.db");
  std::vector<std::string> reasons;
  std::vector<StateChange> history = *store->History(vm.uuid());
  for (const StateChange& c : history) reasons.push_back(c.reason);
  EXPECT_THAT(reasons, ::testing::Contains(HasSubstr(
                           "restarted by policy on-failure (attempt 2) after: "
                           "worker killed by signal 11")));

  // A guest power-off is not a failure.
  request.set_name("quits");
  request.mutable_config()->set_cmdline("poweroff");
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->CreateVm(&context, request, &vm).ok());
  }
  ASSERT_TRUE(Start("quits").ok());
  WaitForState("quits", VM_STATE_OFF);
  absl::SleepFor(absl::Milliseconds(300));
  ASSERT_TRUE(Get("quits", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_OFF);
  EXPECT_EQ(vm.restart_count(), 0u);

  // ... unless the policy is always.
  hvstack::v1::VmConfig always;
  always.set_restart_policy(hvstack::v1::RESTART_POLICY_ALWAYS);
  ASSERT_TRUE(Update("quits", always, {"restart_policy"}).ok());
  ASSERT_TRUE(Start("quits").ok());
  for (absl::Time deadline = absl::Now() + absl::Seconds(10);
       absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(20))) {
    ASSERT_TRUE(Get("quits", &vm).ok());
    if (vm.restart_count() >= 1) break;
  }
  EXPECT_GE(vm.restart_count(), 1u);
  // A client's start resets the count; policy never stops the loop.
  hvstack::v1::VmConfig never;
  never.set_restart_policy(hvstack::v1::RESTART_POLICY_NEVER);
  ASSERT_TRUE(Update("quits", never, {"restart_policy"}).ok());
}

TEST_F(VmServiceTest, PendingPolicyRestartHappensWhenVmmsStartsAgain) {
  // A backoff longer than the test: the restart is still pending when vmms
  // stops.
  StopServer();
  options_.restart_backoff = absl::Hours(1);
  StartServer();
  hvstack::v1::CreateVmRequest request =
      CreateRequest("phoenix", "guest-crash");
  request.mutable_config()->set_restart_policy(
      hvstack::v1::RESTART_POLICY_ON_FAILURE);
  hvstack::v1::Vm vm;
  ASSERT_TRUE(CreateFrom(request, &vm).ok());
  ASSERT_TRUE(Start("phoenix").ok());
  WaitForState("phoenix", VM_STATE_CRASHED);
  StopServer();  // Gives up the pending restart.
  auto count_restarts = [&] {
    auto store = *VmStore::Open(options_.state_dir + "/vmms.db");
    std::vector<StateChange> history = *store->History(vm.uuid());
    return std::count_if(history.begin(), history.end(), [](auto& c) {
      return absl::StrContains(c.reason,
                               "restarted by policy on-failure when vmms "
                               "started, after: guest crashed: triple fault");
    });
  };
  EXPECT_EQ(count_restarts(), 0);
  StartServer();
  for (absl::Time deadline = absl::Now() + absl::Seconds(10);
       count_restarts() == 0 && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(count_restarts(), 1);
  // Setting the policy to never cancels what is pending.
  hvstack::v1::VmConfig config;
  config.set_restart_policy(hvstack::v1::RESTART_POLICY_NEVER);
  WaitForState("phoenix", VM_STATE_CRASHED);
  ASSERT_TRUE(Update("phoenix", config, {"restart_policy"}).ok());
}

TEST_F(VmServiceTest, GetVmAnswersFromWhatVmmsKnowsNotFromTheWorker) {
  // serve-slow takes 5 s to answer GetStatus. GetVm answers at once with what
  // vmms knows: a fresh worker's integration (enlightened, no contact yet),
  // then the background refresh's outcome, never by waiting on the worker.
  ASSERT_TRUE(Create("slowpoke", "serve-slow").ok());
  ASSERT_TRUE(Start("slowpoke").ok());
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Get("slowpoke", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_RUNNING);
  EXPECT_TRUE(vm.integration().enlightened());
  EXPECT_EQ(vm.integration().heartbeat(),
            hvstack::v1::GuestIntegration::HEARTBEAT_NO_CONTACT);
  EXPECT_EQ(vm.integration().error(), "");
  // The refresh gives up on the worker in the background; a later read says
  // so.
  for (absl::Time deadline = absl::Now() + absl::Seconds(20);
       vm.integration().error().empty() && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(100));
    ASSERT_TRUE(Get("slowpoke", &vm).ok());
  }
  EXPECT_THAT(vm.integration().error(), HasSubstr("did not answer"));

  // A worker that answers: its snapshot replaces the fresh one (the fake
  // reports no enlightenments).
  ASSERT_TRUE(Create("quick", "serve").ok());
  ASSERT_TRUE(Start("quick").ok());
  for (absl::Time deadline = absl::Now() + absl::Seconds(20);
       absl::Now() < deadline;) {
    ASSERT_TRUE(Get("quick", &vm).ok());
    if (!vm.integration().enlightened()) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_FALSE(vm.integration().enlightened());
  EXPECT_EQ(vm.integration().error(), "");
}

TEST_F(VmServiceTest, ReadsDoNotWaitForASlowWorker) {
  for (const char* name : {"slow1", "slow2", "slow3"}) {
    ASSERT_TRUE(Create(name, "serve-slow").ok());
    ASSERT_TRUE(Start(name).ok());
  }
  ASSERT_TRUE(Create("fine", "serve").ok());
  ASSERT_TRUE(Start("fine").ok());
  absl::Time begin = absl::Now();
  hvstack::v1::VmStats stats;
  {
    hvstack::v1::GetVmStatsRequest request;
    request.set_name("slow1");
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->GetVmStats(&context, request, &stats).ok());
  }
  const absl::Duration one = absl::Now() - begin;
  EXPECT_EQ(stats.state(), VM_STATE_RUNNING);
  EXPECT_THAT(stats.worker_error(), HasSubstr("did not answer"));
  EXPECT_GT(stats.worker_rss_bytes(), 0u);  // From /proc: no worker call.
  // The worker takes 5 s; vmms gives it 1 s.
  EXPECT_LT(one, absl::Seconds(3));

  begin = absl::Now();
  hvstack::v1::ListVmStatsResponse all;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(
        stub_->ListVmStats(&context, hvstack::v1::ListVmStatsRequest(), &all)
            .ok());
  }
  const absl::Duration list = absl::Now() - begin;
  ASSERT_EQ(all.stats_size(), 4);
  for (const hvstack::v1::VmStats& s : all.stats()) {
    if (s.name() == "fine") {
      EXPECT_EQ(s.worker_error(), "");
      EXPECT_EQ(s.console_bytes(), 7u);
      ASSERT_EQ(s.vps_size(), 1);
      EXPECT_EQ(s.vps(0).exits_by_reason().at("port_io"), 3u);
    } else {
      EXPECT_THAT(s.worker_error(), HasSubstr("did not answer")) << s.name();
    }
  }
  // Three hung workers are asked in parallel: about one deadline, not three.
  EXPECT_LT(list, absl::Seconds(3));
  std::cout << "GetVmStats of a hung worker: " << absl::FormatDuration(one)
            << "; ListVmStats with 3 hung of 4: " << absl::FormatDuration(list)
            << "\n";
}

// Disks through the API: checked at create/attach with the real qemu-img,
// addresses assigned in order and kept, detach by path or address, only
// while the VM is off.
TEST_F(VmServiceTest, DisksAttachDetachAndShowInGetVm) {
  if (std::system("command -v qemu-img >/dev/null") != 0)
    GTEST_SKIP() << "needs qemu-img (Debian package qemu-utils)";
  const std::string raw = dir_.path() + "/a.raw";
  const std::string qcow2 = dir_.path() + "/b.qcow2";
  ASSERT_EQ(std::system(("truncate -s 1M " + raw).c_str()), 0);
  ASSERT_EQ(
      std::system(("qemu-img create -q -f qcow2 " + qcow2 + " 4M").c_str()), 0);
  hvstack::v1::CreateVmRequest request = CreateRequest("d1", "serve");
  request.mutable_config()->add_disks()->set_path(raw);
  hvstack::v1::Vm vm;
  ASSERT_TRUE(CreateFrom(request, &vm).ok());
  ASSERT_EQ(vm.config().disks_size(), 1);
  EXPECT_EQ(vm.config().disks(0).format(), hvstack::v1::DISK_FORMAT_RAW);
  EXPECT_EQ(vm.config().disks(0).serial().size(), 20u);

  auto attach = [&](const hvstack::v1::Disk& disk, hvstack::v1::Vm* out) {
    hvstack::v1::AttachDiskRequest r;
    r.set_name("d1");
    *r.mutable_disk() = disk;
    grpc::ClientContext context;
    return stub_->AttachDisk(&context, r, out);
  };
  hvstack::v1::Disk disk;
  disk.set_path(qcow2);
  disk.set_read_only(true);
  ASSERT_TRUE(attach(disk, &vm).ok());
  ASSERT_EQ(vm.config().disks_size(), 2);
  EXPECT_EQ(vm.config().disks(1).format(), hvstack::v1::DISK_FORMAT_QCOW2);
  EXPECT_EQ(vm.config().disks(1).address().lun(), 1u);
  // The same image twice, and a wrong format: INVALID_ARGUMENT naming them.
  grpc::Status twice = attach(disk, &vm);
  EXPECT_EQ(twice.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(twice.error_message(), HasSubstr("attached already"));
  hvstack::v1::Disk wrong;
  wrong.set_path(qcow2);
  wrong.set_format(hvstack::v1::DISK_FORMAT_VHDX);
  grpc::Status bad = attach(wrong, &vm);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad.error_message(), HasSubstr("is a qcow2 image, not vhdx"));

  ASSERT_TRUE(Get("d1", &vm).ok());
  ASSERT_EQ(vm.config().disks_size(), 2);
  const std::string serial = vm.config().disks(0).serial();

  // While it runs: FAILED_PRECONDITION naming the state.
  ASSERT_TRUE(Start("d1").ok());
  grpc::Status running = attach(wrong, &vm);
  EXPECT_EQ(running.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  hvstack::v1::Disk another;
  another.set_path(raw + "2");
  ASSERT_EQ(std::system(("truncate -s 1M " + raw + "2").c_str()), 0);
  running = attach(another, &vm);
  EXPECT_EQ(running.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(running.error_message(), HasSubstr("running"));
  ASSERT_TRUE(Stop("d1").ok());

  hvstack::v1::DetachDiskRequest detach;
  detach.set_name("d1");
  detach.mutable_address()->set_lun(1);
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->DetachDisk(&context, detach, &vm).ok());
  }
  ASSERT_EQ(vm.config().disks_size(), 1);
  EXPECT_EQ(vm.config().disks(0).serial(), serial);  // Stable.
  detach.clear_address();
  detach.set_path("/no/such.raw");
  {
    grpc::ClientContext context;
    grpc::Status s = stub_->DetachDisk(&context, detach, &vm);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(s.error_message(), HasSubstr("/no/such.raw"));
  }
}

// Disks at start: vmms opens and locks each image (qemu-nbd for qcow2), the
// (fake) worker finds them at their descriptor numbers, writes and flushes a
// block at both ends of each writable one; after a SIGKILL of the worker the
// host files hold those blocks. A writable image belongs to one running VM:
// a second start names the holder; the lock ends with the worker.
TEST_F(VmServiceTest, DisksAreOpenedLockedHandedOverAndSurviveAWorkerKill) {
  if (std::system("command -v qemu-nbd >/dev/null") != 0)
    GTEST_SKIP() << "needs qemu-img and qemu-nbd (Debian package qemu-utils)";
  const std::string raw = dir_.path() + "/a.raw";
  const std::string qcow2 = dir_.path() + "/b.qcow2";
  const std::string ro = dir_.path() + "/c.raw";
  ASSERT_EQ(std::system(("truncate -s 1M " + raw + " " + ro).c_str()), 0);
  ASSERT_EQ(
      std::system(("qemu-img create -q -f qcow2 " + qcow2 + " 2M").c_str()), 0);
  auto with_disks = [&](const std::string& name,
                        std::vector<std::pair<std::string, bool>> disks) {
    hvstack::v1::CreateVmRequest request = CreateRequest(name, "serve");
    for (const auto& [path, read_only] : disks) {
      hvstack::v1::Disk* disk = request.mutable_config()->add_disks();
      disk->set_path(path);
      disk->set_read_only(read_only);
    }
    return CreateFrom(request);
  };
  ASSERT_TRUE(
      with_disks("d1", {{raw, false}, {qcow2, false}, {ro, true}}).ok());
  hvstack::v1::Vm vm;
  grpc::Status started = Start("d1", &vm);
  ASSERT_TRUE(started.ok()) << started.error_message();
  std::string console;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(Console("d1", false, &console).ok());
    if (console.find("disk 0:0:1 flushed") != std::string::npos) break;
    absl::SleepFor(absl::Milliseconds(25));
  }
  EXPECT_THAT(console,
              HasSubstr("disk 0:0:0 raw 1048576 rw\ndisk 0:0:0 flushed"));
  EXPECT_THAT(console,
              HasSubstr("disk 0:0:1 nbd 2097152 rw\ndisk 0:0:1 flushed"));
  EXPECT_THAT(console, HasSubstr("disk 0:0:2 raw 1048576 ro"));

  // Taken: writable or read-only, a second VM is told who holds it.
  ASSERT_TRUE(with_disks("d2", {{raw, true}}).ok());
  grpc::Status refused = Start("d2");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(
      refused.error_message(),
      HasSubstr("disk 0:0:0 " + raw + " is in use by VM 'd1' (writable)"));
  ASSERT_TRUE(with_disks("d3", {{qcow2, false}}).ok());
  refused = Start("d3");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(refused.error_message(), HasSubstr("in use by VM 'd1'"));
  // A read-only image is shared.
  ASSERT_TRUE(with_disks("d4", {{ro, true}}).ok());
  ASSERT_TRUE(Start("d4").ok());
  ASSERT_TRUE(Stop("d4").ok());

  // The worker dies hard: what it flushed is in the files.
  ASSERT_TRUE(Get("d1", &vm).ok());
  ASSERT_GT(vm.worker_pid(), 0);
  kill(static_cast<pid_t>(vm.worker_pid()), SIGKILL);
  WaitForState("d1", VM_STATE_CRASHED);
  auto block_at = [](const std::string& path, off_t offset) {
    std::ifstream in(path, std::ios::binary);
    in.seekg(offset);
    std::string block(9, '\0');
    in.read(block.data(), 9);
    return block;
  };
  EXPECT_EQ(block_at(raw, 0), "fake_vmwp");
  EXPECT_EQ(block_at(raw, (1 << 20) - 512), "fake_vmwp");
  const std::string flat = dir_.path() + "/b.flat";
  ASSERT_EQ(
      std::system(("qemu-img convert -U -f qcow2 -O raw " + qcow2 + " " + flat)
                      .c_str()),
      0);
  EXPECT_EQ(block_at(flat, 0), "fake_vmwp");
  EXPECT_EQ(block_at(flat, (2 << 20) - 512), "fake_vmwp");
  // Every lock went with the worker (qemu-nbd exited with its connection).
  grpc::Status again = Start("d3");
  EXPECT_TRUE(again.ok()) << again.error_message();
  ASSERT_TRUE(Stop("d3").ok());
  ASSERT_TRUE(Start("d2").ok());
  ASSERT_TRUE(Stop("d2").ok());
}

// A worker that just ended (a guest reboot, a crash before a restart) holds
// its raw images through its io_uring's registered files until the kernel
// tears the ring down, 20-50 ms after the process is gone: a start in that
// window waits a moment for a lock no VM of this vmms holds instead of
// failing. A lock that stays is still refused, naming no VM.
TEST_F(VmServiceTest, ARawDiskLockThatGoesAwayMomentsLaterIsWaitedFor) {
  const std::string raw = dir_.path() + "/a.raw";
  ASSERT_EQ(std::system(("truncate -s 1M " + raw).c_str()), 0);
  hvstack::v1::CreateVmRequest request = CreateRequest("d1", "serve");
  request.mutable_config()->add_disks()->set_path(raw);
  ASSERT_TRUE(CreateFrom(request).ok());
  auto hold = [&raw] {
    base::ScopedFd fd(::open(raw.c_str(), O_RDWR | O_CLOEXEC));
    struct flock fl = {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    EXPECT_EQ(::fcntl(fd.get(), F_OFD_SETLK, &fl), 0);
    return fd;
  };
  base::ScopedFd ending = hold();
  std::thread release([&ending] {
    absl::SleepFor(absl::Milliseconds(100));
    ending.reset();
  });
  grpc::Status started = Start("d1");
  release.join();
  EXPECT_TRUE(started.ok()) << started.error_message();
  ASSERT_TRUE(Stop("d1").ok());

  base::ScopedFd staying = hold();
  grpc::Status refused = Start("d1");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(refused.error_message(),
              HasSubstr(raw + " is locked by another process (not a VM of "
                              "this vmms)"));
}

// A worker may reach its storage set-up long after vmms started the disk's
// qemu-nbd (tens of seconds under nested emulation), and qemu-nbd drops a
// client that has not finished the NBD handshake within 10 s of connecting:
// vmms connects only when the worker asks (NbdConnector), so a worker that
// asks 11 s after its start still gets a working connection.
TEST_F(VmServiceTest, NbdDiskWorksForAWorkerSlowerThanQemuNbdsHandshakeLimit) {
  if (std::system("command -v qemu-nbd >/dev/null") != 0)
    GTEST_SKIP() << "needs qemu-img and qemu-nbd (Debian package qemu-utils)";
  const std::string qcow2 = dir_.path() + "/late.qcow2";
  ASSERT_EQ(
      std::system(("qemu-img create -q -f qcow2 " + qcow2 + " 2M").c_str()), 0);
  hvstack::v1::CreateVmRequest request =
      CreateRequest("late", "serve-disks-late");
  request.mutable_config()->add_disks()->set_path(qcow2);
  ASSERT_TRUE(CreateFrom(request).ok());
  grpc::Status started = Start("late");
  ASSERT_TRUE(started.ok()) << started.error_message();
  std::string console;
  for (int i = 0; i < 800; ++i) {
    ASSERT_TRUE(Console("late", false, &console).ok());
    if (console.find("disk 0:0:0 flushed") != std::string::npos) break;
    absl::SleepFor(absl::Milliseconds(25));
  }
  EXPECT_THAT(console,
              HasSubstr("disk 0:0:0 nbd 2097152 rw\ndisk 0:0:0 flushed"));
  ASSERT_TRUE(Stop("late").ok());
  const std::string flat = dir_.path() + "/late.flat";
  ASSERT_EQ(
      std::system(
          ("qemu-img convert -f qcow2 -O raw " + qcow2 + " " + flat).c_str()),
      0);
  std::ifstream in(flat, std::ios::binary);
  std::string block(9, '\0');
  in.read(block.data(), 9);
  EXPECT_EQ(block, "fake_vmwp");
}

// ---- Issue 14: save, restore, discard (fake_vmwp's SaveState / restore).

namespace save_tests {

bool Exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

}  // namespace save_tests

TEST_F(VmServiceTest, SaveRestoreAndDiscardFollowTheStateTable) {
  using hvstack::v1::VM_STATE_RESTORING;
  using hvstack::v1::VM_STATE_SAVED;
  using hvstack::v1::VM_STATE_SAVING;
  ASSERT_TRUE(Create("sv", "serve").ok());
  // Nothing to save, nothing to discard.
  ExpectError(CallByName<hvstack::v1::SaveVmRequest>(
                  &hvstack::v1::VmService::Stub::SaveVm, "sv"),
              grpc::StatusCode::FAILED_PRECONDITION, "VM 'sv' is off");
  ExpectError(CallByName<hvstack::v1::DiscardSavedStateRequest>(
                  &hvstack::v1::VmService::Stub::DiscardSavedState, "sv"),
              grpc::StatusCode::FAILED_PRECONDITION, "no saved state");
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Start("sv", &vm).ok());
  const RuntimePaths paths = RuntimePathsFor(options_.state_dir, vm.uuid());
  grpc::Status saved = CallByName<hvstack::v1::SaveVmRequest>(
      &hvstack::v1::VmService::Stub::SaveVm, "sv", &vm);
  ASSERT_TRUE(saved.ok()) << saved.error_message();
  EXPECT_EQ(vm.state(), VM_STATE_SAVED);
  EXPECT_EQ(vm.worker_pid(), 0);
  EXPECT_THAT(vm.state_reason(), HasSubstr("saved by user"));
  EXPECT_EQ(vm.saved_state().saved_from(), VM_STATE_RUNNING);
  EXPECT_EQ(vm.saved_state().state_file(), paths.saved_state);
  EXPECT_GT(vm.saved_state().state_bytes(), 0u);
  EXPECT_TRUE(save_tests::Exists(paths.saved_state));
  EXPECT_TRUE(save_tests::Exists(paths.saved_memory));
  EXPECT_FALSE(save_tests::Exists(paths.saved_state + ".tmp"));
  // Saved: no pause, no stop, no second save.
  ExpectError(Pause("sv"), grpc::StatusCode::FAILED_PRECONDITION, "is saved");
  ExpectError(Stop("sv"), grpc::StatusCode::FAILED_PRECONDITION, "is saved");
  ExpectError(CallByName<hvstack::v1::SaveVmRequest>(
                  &hvstack::v1::VmService::Stub::SaveVm, "sv"),
              grpc::StatusCode::FAILED_PRECONDITION, "is saved");

  // Start restores: the console goes on, the files are used up.
  ASSERT_TRUE(Start("sv", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_RUNNING);
  EXPECT_EQ(vm.state_reason(), "restored from its saved state");
  EXPECT_FALSE(vm.has_saved_state());
  EXPECT_FALSE(save_tests::Exists(paths.saved_state));
  std::string console;
  ASSERT_TRUE(Console("sv", false, &console).ok());
  std::ifstream log(paths.console_log);
  std::string retained((std::istreambuf_iterator<char>(log)), {});
  EXPECT_EQ(retained, "booted\nrestored\n");

  // From Paused, then discarded.
  ASSERT_TRUE(Pause("sv").ok());
  ASSERT_TRUE(CallByName<hvstack::v1::SaveVmRequest>(
                  &hvstack::v1::VmService::Stub::SaveVm, "sv", &vm)
                  .ok());
  EXPECT_EQ(vm.saved_state().saved_from(), VM_STATE_PAUSED);
  ASSERT_TRUE(CallByName<hvstack::v1::DiscardSavedStateRequest>(
                  &hvstack::v1::VmService::Stub::DiscardSavedState, "sv", &vm)
                  .ok());
  EXPECT_EQ(vm.state(), VM_STATE_OFF);
  EXPECT_EQ(vm.state_reason(), "saved state discarded");
  EXPECT_FALSE(vm.has_saved_state());
  EXPECT_FALSE(save_tests::Exists(paths.saved_dir));
  EXPECT_THAT(StateHistory(vm.uuid()),
              ElementsAre(VM_STATE_OFF, VM_STATE_STARTING, VM_STATE_RUNNING,
                          VM_STATE_SAVING, VM_STATE_SAVED, VM_STATE_RESTORING,
                          VM_STATE_RUNNING, VM_STATE_PAUSED, VM_STATE_SAVING,
                          VM_STATE_SAVED, VM_STATE_OFF));
}

TEST_F(VmServiceTest, RestoreIntoAChangedConfigurationIsRefusedNamingIt) {
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Create("sv", "serve", 1).ok());
  ASSERT_TRUE(Start("sv", &vm).ok());
  const RuntimePaths paths = RuntimePathsFor(options_.state_dir, vm.uuid());
  ASSERT_TRUE(CallByName<hvstack::v1::SaveVmRequest>(
                  &hvstack::v1::VmService::Stub::SaveVm, "sv")
                  .ok());
  hvstack::v1::VmConfig config;
  config.set_vcpus(2);
  ASSERT_TRUE(Update("sv", config, {"vcpus"}).ok());
  grpc::Status restored = Start("sv");
  EXPECT_EQ(restored.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << restored.error_message();
  EXPECT_THAT(restored.error_message(),
              HasSubstr("vcpus: the saved VM had 1, its configuration now "
                        "says 2"));
  vm = WaitForState("sv", hvstack::v1::VM_STATE_SAVED);
  EXPECT_THAT(vm.state_reason(), HasSubstr("restore failed: "));
  EXPECT_THAT(vm.state_reason(), HasSubstr("vcpus"));
  EXPECT_TRUE(vm.has_saved_state());
  EXPECT_TRUE(save_tests::Exists(paths.saved_state));
  EXPECT_TRUE(save_tests::Exists(paths.saved_memory));
  // Back as it was saved: the restore works.
  config.set_vcpus(1);
  ASSERT_TRUE(Update("sv", config, {"vcpus"}).ok());
  ASSERT_TRUE(Start("sv", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_RUNNING);
  ASSERT_TRUE(Stop("sv").ok());
}

TEST_F(VmServiceTest, ASaveTheWorkerRefusesLeavesTheVmAsItWas) {
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Create("sv", "save-fails").ok());
  ASSERT_TRUE(Start("sv", &vm).ok());
  const RuntimePaths paths = RuntimePathsFor(options_.state_dir, vm.uuid());
  ExpectError(CallByName<hvstack::v1::SaveVmRequest>(
                  &hvstack::v1::VmService::Stub::SaveVm, "sv"),
              grpc::StatusCode::FAILED_PRECONDITION,
              "save failed: a VSP refused to quiesce");
  ASSERT_TRUE(Get("sv", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_RUNNING);
  EXPECT_THAT(vm.state_reason(), HasSubstr("save failed"));
  EXPECT_FALSE(save_tests::Exists(paths.saved_dir));
  ASSERT_TRUE(Stop("sv").ok());
}

TEST_F(VmServiceTest, AWorkerKilledDuringItsSaveLeavesNoSavedState) {
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Create("sv", "save-slow").ok());
  ASSERT_TRUE(Start("sv", &vm).ok());
  const RuntimePaths paths = RuntimePathsFor(options_.state_dir, vm.uuid());
  grpc::Status saved;
  std::thread save([&] {
    saved = CallByName<hvstack::v1::SaveVmRequest>(
        &hvstack::v1::VmService::Stub::SaveVm, "sv");
  });
  // fake_vmwp's save-slow writes after 3 s.
  WaitForState("sv", hvstack::v1::VM_STATE_SAVING);
  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_EQ(kill(static_cast<pid_t>(vm.worker_pid()), SIGKILL), 0);
  save.join();
  EXPECT_EQ(saved.error_code(), grpc::StatusCode::ABORTED)
      << saved.error_message();
  EXPECT_THAT(saved.error_message(), HasSubstr("the worker ended"));
  ASSERT_TRUE(Get("sv", &vm).ok());
  EXPECT_EQ(vm.state(), VM_STATE_CRASHED);
  EXPECT_THAT(vm.state_reason(), HasSubstr("during a save"));
  EXPECT_FALSE(vm.has_saved_state());
  EXPECT_FALSE(save_tests::Exists(paths.saved_dir));
  // Nothing half-written is ever restored: the next start is a boot.
  ASSERT_TRUE(Start("sv", &vm).ok());
  EXPECT_EQ(vm.state_reason(), "worker ready");
  ASSERT_TRUE(Stop("sv").ok());
}

TEST_F(VmServiceTest, ASavedVmSurvivesAVmmsRestartAndDeleteRemovesIt) {
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Create("sv", "serve").ok());
  ASSERT_TRUE(Start("sv", &vm).ok());
  const RuntimePaths paths = RuntimePathsFor(options_.state_dir, vm.uuid());
  ASSERT_TRUE(CallByName<hvstack::v1::SaveVmRequest>(
                  &hvstack::v1::VmService::Stub::SaveVm, "sv")
                  .ok());
  StopServer();
  StartServer();
  ASSERT_TRUE(Get("sv", &vm).ok());
  EXPECT_EQ(vm.state(), hvstack::v1::VM_STATE_SAVED);
  EXPECT_TRUE(save_tests::Exists(paths.saved_state));
  ASSERT_TRUE(Start("sv", &vm).ok());
  EXPECT_EQ(vm.state_reason(), "restored from its saved state");
  ASSERT_TRUE(CallByName<hvstack::v1::SaveVmRequest>(
                  &hvstack::v1::VmService::Stub::SaveVm, "sv")
                  .ok());
  ASSERT_TRUE(Delete("sv").ok());
  EXPECT_FALSE(save_tests::Exists(paths.dir));
}

}  // namespace
}  // namespace vmms
