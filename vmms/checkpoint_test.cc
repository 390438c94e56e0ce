// Checkpoints (issue 14) end to end inside one process: a real vmms Server on
// a unix socket, real SQLite, real qemu-img/qemu-io images and fake_vmwp
// (testing/fake_vmwp.cc) as the worker, so no KVM is needed. The "guest"
// writes are qemu-io writes into the VM's current disk images while it is
// Off; a start through fake_vmwp then serves the overlay chains with
// qemu-nbd, as for a real guest.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "vmms/runtime_paths.h"
#include "vmms/server.h"
#include "vmms/test_dir.h"
#include "vmms/test_kernels.h"

namespace vmms {
namespace {

using hvstack::v1::Checkpoint;
using ::testing::HasSubstr;

// Where the test's pattern lives: away from both ends, which fake_vmwp's
// "serve" writes to.
constexpr uint64_t kPatternOffset = 1 << 20;
constexpr uint64_t kDiskBytes = 4 << 20;

std::string Shell(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return "popen failed";
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int status = ::pclose(pipe);
  if (status != 0) ADD_FAILURE() << command << " failed: " << out;
  return out;
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/usr/bin/qemu-img", X_OK) != 0 ||
        ::access("/usr/bin/qemu-io", X_OK) != 0) {
      GTEST_SKIP() << "needs qemu-img and qemu-io (Debian's qemu-utils)";
    }
    options_.state_dir = dir_.path() + "/st";
    options_.kvm_device = "/dev/null";
    options_.vmwp =
        std::filesystem::absolute("vmms/testing/fake_vmwp").string();
    options_.start_timeout = absl::Seconds(10);
    options_.sandbox = false;
    auto server = Server::Start(options_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = hvstack::v1::VmService::NewStub(grpc::CreateChannel(
        "unix:" + server_->socket_path(), grpc::InsecureChannelCredentials()));
  }

  // A VM with a raw and a qcow2 disk (fresh images) and a read-only raw one.
  void CreateVm(const std::string& name) {
    raw_ = dir_.path() + "/" + name + "-raw.img";
    qcow2_ = dir_.path() + "/" + name + "-q.qcow2";
    ro_ = dir_.path() + "/" + name + "-ro.img";
    Shell(absl::StrCat("truncate -s ", kDiskBytes, " ", raw_, " ", ro_));
    Shell(
        absl::StrCat("qemu-img create -q -f qcow2 ", qcow2_, " ", kDiskBytes));
    hvstack::v1::CreateVmRequest request;
    request.set_name(name);
    request.mutable_config()->set_vcpus(1);
    request.mutable_config()->set_memory_mib(64);
    request.mutable_config()->set_kernel_path(testing::HelloKernel());
    request.mutable_config()->set_cmdline("serve");
    for (const auto& [path, format, ro] :
         {std::tuple{raw_, hvstack::v1::DISK_FORMAT_RAW, false},
          std::tuple{qcow2_, hvstack::v1::DISK_FORMAT_QCOW2, false},
          std::tuple{ro_, hvstack::v1::DISK_FORMAT_RAW, true}}) {
      hvstack::v1::Disk* d = request.mutable_config()->add_disks();
      d->set_path(path);
      d->set_format(format);
      d->set_read_only(ro);
    }
    grpc::ClientContext context;
    hvstack::v1::Vm vm;
    grpc::Status s = stub_->CreateVm(&context, request, &vm);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  hvstack::v1::Vm Get(const std::string& name) {
    hvstack::v1::GetVmRequest request;
    request.set_name(name);
    grpc::ClientContext context;
    hvstack::v1::Vm vm;
    grpc::Status s = stub_->GetVm(&context, request, &vm);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return vm;
  }

  // The "guest" writes `c` over 64 KiB of each writable disk.
  void Write(const std::string& name, char c) {
    const hvstack::v1::Vm vm = Get(name);
    for (const hvstack::v1::Disk& d : vm.config().disks()) {
      if (d.read_only()) continue;
      const char* fmt =
          d.format() == hvstack::v1::DISK_FORMAT_QCOW2 ? "qcow2" : "raw";
      Shell(absl::StrCat("qemu-io -f ", fmt, " -c 'write -q -P ",
                         static_cast<int>(c), " ", kPatternOffset, " 64k' ",
                         d.path()));
    }
  }
  // What each writable disk holds at the pattern (its first byte, or '?'
  // when the 64 KiB are not all that byte).
  std::string Read(const std::string& name) {
    std::string out;
    const hvstack::v1::Vm vm = Get(name);
    for (const hvstack::v1::Disk& d : vm.config().disks()) {
      if (d.read_only()) continue;
      const std::string flat = dir_.path() + "/flat.raw";
      const char* fmt =
          d.format() == hvstack::v1::DISK_FORMAT_QCOW2 ? "qcow2" : "raw";
      Shell(absl::StrCat("qemu-img convert -U -f ", fmt, " -O raw ", d.path(),
                         " ", flat));
      std::ifstream in(flat, std::ios::binary);
      in.seekg(kPatternOffset);
      std::string block(64 << 10, '\0');
      in.read(block.data(), static_cast<std::streamsize>(block.size()));
      const char first = block[0];
      out += block.find_first_not_of(first) == std::string::npos
                 ? (first == 0 ? '0' : first)
                 : '?';
    }
    return out;
  }

  grpc::Status Create(const std::string& vm, const std::string& checkpoint,
                      Checkpoint* out = nullptr) {
    hvstack::v1::CreateCheckpointRequest request;
    request.set_name(vm);
    request.set_checkpoint(checkpoint);
    grpc::ClientContext context;
    Checkpoint c;
    return stub_->CreateCheckpoint(&context, request, out ? out : &c);
  }
  grpc::Status Apply(const std::string& vm, const std::string& checkpoint,
                     hvstack::v1::Vm* out = nullptr) {
    hvstack::v1::ApplyCheckpointRequest request;
    request.set_name(vm);
    request.set_checkpoint(checkpoint);
    grpc::ClientContext context;
    hvstack::v1::Vm v;
    return stub_->ApplyCheckpoint(&context, request, out ? out : &v);
  }
  grpc::Status Delete(const std::string& vm, const std::string& checkpoint) {
    hvstack::v1::DeleteCheckpointRequest request;
    request.set_name(vm);
    request.set_checkpoint(checkpoint);
    grpc::ClientContext context;
    hvstack::v1::ListCheckpointsResponse rest;
    return stub_->DeleteCheckpoint(&context, request, &rest);
  }
  // "name<-parent*" per checkpoint (* = current), in order.
  std::string Tree(const std::string& vm) {
    hvstack::v1::ListCheckpointsRequest request;
    request.set_name(vm);
    grpc::ClientContext context;
    hvstack::v1::ListCheckpointsResponse list;
    grpc::Status s = stub_->ListCheckpoints(&context, request, &list);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::string out;
    for (const Checkpoint& c : list.checkpoints()) {
      absl::StrAppend(&out, out.empty() ? "" : " ", c.name(), "<-", c.parent(),
                      c.current() ? "*" : "");
    }
    return out;
  }
  template <typename Request, typename Method>
  grpc::Status Call(Method method, const std::string& name,
                    hvstack::v1::Vm* out = nullptr) {
    Request request;
    request.set_name(name);
    grpc::ClientContext context;
    hvstack::v1::Vm vm;
    return ((*stub_).*method)(&context, request, out ? out : &vm);
  }

  testing::TestDir dir_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<hvstack::v1::VmService::Stub> stub_;
  std::string raw_, qcow2_, ro_;
};

TEST_F(CheckpointTest, TreeOfAnOffVmAppliesEachDiskStateAndSurvivesDeletes) {
  CreateVm("cp");
  Write("cp", 'A');
  Checkpoint c1;
  grpc::Status s = Create("cp", "c1", &c1);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(c1.parent(), "");
  EXPECT_TRUE(c1.current());
  EXPECT_EQ(c1.vm_state(), hvstack::v1::VM_STATE_OFF);
  ASSERT_EQ(c1.config().disks_size(), 3);
  EXPECT_EQ(c1.config().disks(0).path(), raw_) << "the user's image, frozen";
  // The VM now writes to qcow2 overlays under vmms's state directory; the
  // read-only disk stays as it is.
  hvstack::v1::Vm vm = Get("cp");
  const std::string overlays =
      RuntimePathsFor(options_.state_dir, vm.uuid()).dir + "/checkpoints/";
  EXPECT_THAT(vm.config().disks(0).path(), HasSubstr(overlays));
  EXPECT_EQ(vm.config().disks(0).format(), hvstack::v1::DISK_FORMAT_QCOW2);
  EXPECT_EQ(vm.config().disks(2).path(), ro_);
  Write("cp", 'B');
  ASSERT_TRUE(Create("cp", "c2").ok());
  Write("cp", 'C');
  ASSERT_TRUE(Create("cp", "c3").ok());
  Write("cp", 'D');
  EXPECT_EQ(Read("cp"), "DD");
  EXPECT_EQ(Read("cp"), "DD");
  EXPECT_EQ(Tree("cp"), "c1<- c2<-c1 c3<-c2*");
  // The user's images were never written after c1.
  Shell(absl::StrCat("qemu-io -f raw -c 'read -q -P 65 ", kPatternOffset,
                     " 64k' ", raw_));

  hvstack::v1::UpdateVmRequest update;  // c1 had 1 vCPU; now 2
  update.set_name("cp");
  update.mutable_config()->set_vcpus(2);
  update.mutable_update_mask()->add_paths("vcpus");
  {
    grpc::ClientContext context;
    hvstack::v1::Vm updated;
    ASSERT_TRUE(stub_->UpdateVm(&context, update, &updated).ok());
  }
  s = Apply("cp", "c1", &vm);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(vm.config().vcpus(), 1u) << "the configuration as at c1";
  EXPECT_EQ(vm.state(), hvstack::v1::VM_STATE_OFF);
  EXPECT_EQ(Read("cp"), "AA");
  EXPECT_EQ(Tree("cp"), "c1<-* c2<-c1 c3<-c2");
  ASSERT_TRUE(Apply("cp", "c2").ok());
  EXPECT_EQ(Read("cp"), "BB");
  ASSERT_TRUE(Apply("cp", "c3").ok());
  EXPECT_EQ(Read("cp"), "CC");
  // A start serves the overlay chains (qemu-nbd) and the guest's writes go
  // to the overlay only.
  ASSERT_TRUE(Call<hvstack::v1::StartVmRequest>(
                  &hvstack::v1::VmService::Stub::StartVm, "cp")
                  .ok());
  ASSERT_TRUE(Call<hvstack::v1::StopVmRequest>(
                  &hvstack::v1::VmService::Stub::StopVm, "cp")
                  .ok());
  for (int i = 0; i < 100 && Get("cp").state() != hvstack::v1::VM_STATE_OFF;
       ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(Read("cp"), "CC");
  // Branch: a new checkpoint from c1 is c1's child.
  ASSERT_TRUE(Apply("cp", "c1").ok());
  Write("cp", 'E');
  ASSERT_TRUE(Create("cp", "e1").ok());
  EXPECT_EQ(Tree("cp"), "c1<- c2<-c1 c3<-c2 e1<-c1*");

  // Delete c2 (the middle): c3's images were on c2's and are rebased.
  std::vector<std::string> c2_images;
  {
    hvstack::v1::ListCheckpointsRequest request;
    request.set_name("cp");
    grpc::ClientContext context;
    hvstack::v1::ListCheckpointsResponse list;
    ASSERT_TRUE(stub_->ListCheckpoints(&context, request, &list).ok());
    for (const Checkpoint& c : list.checkpoints()) {
      if (c.name() != "c2") continue;
      for (const hvstack::v1::Disk& d : c.config().disks()) {
        if (!d.read_only()) c2_images.push_back(d.path());
      }
    }
  }
  ASSERT_EQ(c2_images.size(), 2u);
  s = Delete("cp", "c2");
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Tree("cp"), "c1<- c3<-c1 e1<-c1*");
  for (const std::string& f : c2_images) {
    EXPECT_FALSE(std::filesystem::exists(f)) << f << " was merged away";
  }
  ASSERT_TRUE(Apply("cp", "c3").ok());
  EXPECT_EQ(Read("cp"), "CC");
  ASSERT_TRUE(Apply("cp", "e1").ok());
  EXPECT_EQ(Read("cp"), "EE");
  // Delete the root: its children stay valid.
  ASSERT_TRUE(Delete("cp", "c1").ok());
  EXPECT_EQ(Tree("cp"), "c3<- e1<-*");
  ASSERT_TRUE(Apply("cp", "c3").ok());
  EXPECT_EQ(Read("cp"), "CC");
  EXPECT_TRUE(std::filesystem::exists(raw_)) << "the user's image is kept";
}

TEST_F(CheckpointTest, SavedVmCheckpointBringsItsSavedStateBack) {
  CreateVm("sv");
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Call<hvstack::v1::StartVmRequest>(
                  &hvstack::v1::VmService::Stub::StartVm, "sv")
                  .ok());
  // Running: apply and delete are refused, saying what to do.
  grpc::Status s = Apply("sv", "s1");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("is running"));
  EXPECT_THAT(s.error_message(), HasSubstr("save it"));
  s = Call<hvstack::v1::SaveVmRequest>(&hvstack::v1::VmService::Stub::SaveVm,
                                       "sv", &vm);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(vm.state(), hvstack::v1::VM_STATE_SAVED);
  Checkpoint c;
  s = Create("sv", "s1", &c);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(c.vm_state(), hvstack::v1::VM_STATE_SAVED);
  EXPECT_TRUE(std::filesystem::exists(c.saved_state().state_file()));
  EXPECT_TRUE(std::filesystem::exists(c.saved_state().memory_file()));
  // Discarded, then brought back by the checkpoint.
  s = Call<hvstack::v1::DiscardSavedStateRequest>(
      &hvstack::v1::VmService::Stub::DiscardSavedState, "sv", &vm);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(vm.state(), hvstack::v1::VM_STATE_OFF);
  s = Apply("sv", "s1", &vm);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(vm.state(), hvstack::v1::VM_STATE_SAVED);
  EXPECT_THAT(vm.state_reason(), HasSubstr("checkpoint 's1' applied"));
  const RuntimePaths paths = RuntimePathsFor(options_.state_dir, vm.uuid());
  EXPECT_EQ(vm.saved_state().state_file(), paths.saved_state);
  // StartVm restores from it; the checkpoint keeps its own copy.
  s = Call<hvstack::v1::StartVmRequest>(&hvstack::v1::VmService::Stub::StartVm,
                                        "sv", &vm);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(vm.state(), hvstack::v1::VM_STATE_RUNNING);
  EXPECT_EQ(vm.state_reason(), "restored from its saved state");
  EXPECT_TRUE(std::filesystem::exists(c.saved_state().state_file()));
  ASSERT_TRUE(Call<hvstack::v1::StopVmRequest>(
                  &hvstack::v1::VmService::Stub::StopVm, "sv")
                  .ok());
  for (int i = 0; i < 100 && Get("sv").state() != hvstack::v1::VM_STATE_OFF;
       ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  // Applied again to the Off VM: Saved again; deleting it removes its copy.
  ASSERT_TRUE(Apply("sv", "s1").ok());
  EXPECT_EQ(Get("sv").state(), hvstack::v1::VM_STATE_SAVED);
  ASSERT_TRUE(Delete("sv", "s1").ok());
  EXPECT_FALSE(std::filesystem::exists(c.saved_state().state_file()));
  EXPECT_TRUE(std::filesystem::exists(paths.saved_state))
      << "the VM's own saved state stays";
}

TEST_F(CheckpointTest, BadRequestsAreRefusedNamingTheProblem) {
  CreateVm("bad");
  ASSERT_TRUE(Create("bad", "one").ok());
  grpc::Status s = Create("bad", "one");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(s.error_message(), HasSubstr("'one' already"));
  s = Create("bad", "Not_A_Name");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("checkpoint name"));
  s = Apply("bad", "two");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("no checkpoint 'two'"));
  s = Delete("bad", "two");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  s = Create("nosuchvm", "one");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Tree("bad"), "one<-*");
  // A VM's checkpoints go with it.
  hvstack::v1::DeleteVmRequest del;
  del.set_name("bad");
  grpc::ClientContext context;
  google::protobuf::Empty empty;
  ASSERT_TRUE(stub_->DeleteVm(&context, del, &empty).ok());
  EXPECT_TRUE(std::filesystem::exists(raw_));
}

TEST_F(CheckpointTest, RunningVmIsSavedCheckpointedAndRestored) {
  CreateVm("run");
  hvstack::v1::Vm vm;
  ASSERT_TRUE(Call<hvstack::v1::StartVmRequest>(
                  &hvstack::v1::VmService::Stub::StartVm, "run", &vm)
                  .ok());
  const int64_t first_worker = vm.worker_pid();
  Checkpoint c;
  grpc::Status s = Create("run", "live", &c);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(c.vm_state(), hvstack::v1::VM_STATE_SAVED) << "with its memory";
  EXPECT_TRUE(std::filesystem::exists(c.saved_state().state_file()));
  // The VM runs on, restored by a fresh worker; its disks are the overlays.
  vm = Get("run");
  EXPECT_EQ(vm.state(), hvstack::v1::VM_STATE_RUNNING);
  EXPECT_EQ(vm.state_reason(), "restored from its saved state");
  EXPECT_NE(vm.worker_pid(), first_worker);
  EXPECT_EQ(vm.config().disks(0).format(), hvstack::v1::DISK_FORMAT_QCOW2);
  EXPECT_FALSE(vm.has_saved_state()) << "the VM's own copy was used up";
  // Paused stays paused.
  ASSERT_TRUE(Call<hvstack::v1::PauseVmRequest>(
                  &hvstack::v1::VmService::Stub::PauseVm, "run")
                  .ok());
  ASSERT_TRUE(Create("run", "paused").ok());
  EXPECT_EQ(Get("run").state(), hvstack::v1::VM_STATE_PAUSED);
  EXPECT_EQ(Tree("run"), "live<- paused<-live*");
  ASSERT_TRUE(Call<hvstack::v1::StopVmRequest>(
                  &hvstack::v1::VmService::Stub::StopVm, "run")
                  .ok());
  for (int i = 0; i < 100 && Get("run").state() != hvstack::v1::VM_STATE_OFF;
       ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  // Applied: Saved with the checkpoint's state; a start restores it.
  ASSERT_TRUE(Apply("run", "live", &vm).ok());
  EXPECT_EQ(vm.state(), hvstack::v1::VM_STATE_SAVED);
  s = Call<hvstack::v1::StartVmRequest>(&hvstack::v1::VmService::Stub::StartVm,
                                        "run", &vm);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(vm.state(), hvstack::v1::VM_STATE_RUNNING);
  EXPECT_EQ(vm.state_reason(), "restored from its saved state");
}

}  // namespace
}  // namespace vmms
