// The libvirt backend against a real libvirt + QEMU: libvirt's embedded QEMU
// driver (qemu:///embed?root=DIR, no daemon) in a root of each test's own,
// started by vmms and torn down with the test. Guests: Debian's kernel
// (tests/linux/fetch_kernel.sh) under QEMU's TCG with a busybox initramfs
// (tests/linux/make_initramfs.sh) that prints a marker and then powers off,
// or first waits for the ACPI power button.
#include <dirent.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "tests/harness/private_network.h"
#include "tests/harness/process.h"
#include "tests/harness/vmms_instance.h"

namespace hvtest {
namespace {

using hvstack::v1::VmEvent;
using hvstack::v1::VmService;
using ::testing::HasSubstr;

// Capability caches are probed once per machine and copied into every
// test's root (a fresh root probes QEMU for 3-8 s).
constexpr char kCapsCache[] = "/var/tmp/hvstack/libvirt-caps";

struct Guest {
  std::string kernel;
  std::string poweroff_initrd;  // Marker, then power-off.
  std::string button_initrd;    // Marker, then waits for the power button.
};

// The test process adopts the QEMU processes of a vmms it SIGKILLed (it is a
// subreaper) and reaps them at once, as vmms does, so that libvirt's destroy
// of them is not left waiting for a slow PID 1.
void ReapQemuZombies(std::atomic<bool>* stop) {
  while (!*stop) {
    absl::SleepFor(absl::Milliseconds(20));
    DIR* tasks = opendir("/proc/self/task");
    if (tasks == nullptr) continue;
    while (dirent* e = readdir(tasks)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream children(
          absl::StrCat("/proc/self/task/", e->d_name, "/children"));
      pid_t pid;
      while (children >> pid) {
        std::string stat =
            ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/stat"));
        size_t close = stat.rfind(')');
        if (close != std::string::npos && close + 2 < stat.size() &&
            stat[close + 2] == 'Z' &&
            stat.find("(qemu-system") != std::string::npos) {
          waitpid(pid, nullptr, WNOHANG);
        }
      }
    }
    closedir(tasks);
  }
}

// A libvirtd of the test's own (Debian ships the monolithic daemon): in a
// private mount namespace where /etc/libvirt, /run/libvirt, /var/lib/libvirt,
// /var/cache/libvirt and /var/log/libvirt are directories of the test, so it
// shares nothing with a host libvirt; its socket in the test's directory.
// Killed and restarted by the test to lose vmms's connection for real.
class PrivateLibvirtd {
 public:
  explicit PrivateLibvirtd(std::string dir) : dir_(std::move(dir)) {
    for (const char* sub : {"etc", "run", "lib", "cache/qemu", "log", "sock"}) {
      std::filesystem::create_directories(dir_ + "/" + sub);
    }
    std::ofstream(dir_ + "/etc/libvirtd.conf")
        << "unix_sock_dir = \"" << dir_ << "/sock\"\n"
        << "unix_sock_rw_perms = \"0700\"\nauth_unix_rw = \"none\"\n"
           "auth_unix_ro = \"none\"\n";
    std::ofstream(dir_ + "/etc/qemu.conf")
        << "user = \"root\"\ngroup = \"root\"\nstdio_handler = \"file\"\n"
           "remember_owner = 0\ncgroup_controllers = [ ]\nnamespaces = [ ]\n";
    std::ofstream(dir_ + "/start.sh")
        << "set -e\nmount --make-rprivate /\n"
        << "mount --bind " << dir_ << "/etc /etc/libvirt\n"
        << "for d in /run /var/lib /var/cache /var/log; do "
           "mount -t tmpfs tmpfs $d; done\n"
        << "for d in run:/run lib:/var/lib cache:/var/cache log:/var/log; do "
           "mkdir -p ${d#*:}/libvirt; mount --bind "
        << dir_
        << "/${d%%:*} ${d#*:}/libvirt; done\n"
        // Console locks (/var/lock is /run/lock).
        << "mkdir -p /run/lock\n"
        << "exec /usr/sbin/libvirtd --config " << dir_
        << "/etc/libvirtd.conf --pid-file " << dir_ << "/libvirtd.pid\n";
    if (std::filesystem::exists(kCaps)) {
      std::filesystem::copy(kCaps, dir_ + "/cache/qemu/capabilities",
                            std::filesystem::copy_options::recursive);
    }
  }
  ~PrivateLibvirtd() {
    Kill();
    // QEMUs it left (the test reaps them).
    std::error_code ec;
    for (const auto& entry :
         std::filesystem::directory_iterator(dir_ + "/run/qemu", ec)) {
      if (entry.path().extension() != ".pid") continue;
      pid_t pid = 0;
      std::ifstream(entry.path()) >> pid;
      if (pid > 0) kill(pid, SIGKILL);
    }
    const std::string caps = dir_ + "/cache/qemu/capabilities";
    if (!std::filesystem::exists(kCaps) && std::filesystem::exists(caps)) {
      std::filesystem::copy(caps, kCaps,
                            std::filesystem::copy_options::recursive, ec);
    }
  }

  std::string Uri() const {
    return "qemu+unix:///system?socket=" + dir_ + "/sock/libvirt-sock";
  }

  // Starts it and waits until it answers.
  absl::Status Start() {
    absl::StatusOr<ChildProcess> started = ChildProcess::Start(
        {"/usr/bin/unshare", "-m", "/bin/bash", dir_ + "/start.sh"},
        dir_ + "/libvirtd.log");
    if (!started.ok()) return started.status();
    process_ = std::move(*started);
    for (absl::Time end = absl::Now() + absl::Seconds(60); absl::Now() < end;
         absl::SleepFor(absl::Milliseconds(100))) {
      if (!process_.Alive()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "libvirtd exited: ", ReadFileOrEmpty(dir_ + "/libvirtd.log")));
      }
      absl::StatusOr<CommandResult> version = RunCommand(
          {"/usr/bin/virsh", "-c", Uri(), "version"}, {}, absl::Seconds(30));
      if (version.ok() && version->exit_code == 0) return absl::OkStatus();
    }
    return absl::DeadlineExceededError("libvirtd did not answer in 60 s");
  }
  void Kill() {
    if (process_.pid() <= 0 || !process_.Alive()) return;
    process_.Kill(SIGKILL);
    (void)process_.Wait(absl::Seconds(10));
  }
  // The pid of domain `name`'s QEMU (libvirtd's pid file).
  pid_t QemuPid(const std::string& name) const {
    pid_t pid = 0;
    std::ifstream(dir_ + "/run/qemu/" + name + ".pid") >> pid;
    return pid;
  }

 private:
  static constexpr char kCaps[] = "/var/tmp/hvstack/libvirtd-caps";
  std::string dir_;
  ChildProcess process_;
};

class LibvirtTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    for (const char* tool : {"/usr/bin/qemu-system-x86_64", "/usr/bin/virsh",
                             "/usr/sbin/libvirtd"}) {
      if (access(tool, X_OK) != 0) {
        skip_ = absl::StrCat("needs ", tool,
                             " (deploy/install-deps.sh installs libvirt and "
                             "QEMU)");
        return;
      }
    }
    if (RunCommand({"/usr/bin/getent", "passwd", "libvirt-qemu"})
            .value_or(CommandResult{})
            .exit_code != 0) {
      skip_ = "needs the user libvirt-qemu (deploy/install-deps.sh)";
      return;
    }
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    reaper_ = new std::thread(ReapQemuZombies, &stop_reaper_);
    assets_ = new TempDir();
    absl::StatusOr<CommandResult> kernel =
        RunCommand({"/bin/bash", Runfile("tests/linux/fetch_kernel.sh"),
                    assets_->path() + "/kernel"},
                   {}, absl::Minutes(5));
    if (!kernel.ok() || kernel->exit_code != 0) {
      skip_ =
          absl::StrCat("no Debian kernel (tests/linux/fetch_kernel.sh): ",
                       kernel.ok() ? kernel->err : kernel.status().ToString());
      return;
    }
    const std::string k = assets_->path() + "/kernel";
    guest_.kernel = k + "/vmlinux";
    guest_.poweroff_initrd = assets_->path() + "/poweroff.cpio";
    guest_.button_initrd = assets_->path() + "/button.cpio";
    const std::string modules =
        absl::StrCat(k, "/modules/evdev.ko ", k, "/modules/button.ko");
    // Both print the marker; the button one then waits for the ACPI power
    // button (the device opened before it says so, so no press is lost) and
    // says POWER-BUTTON-PRESSED before it powers off.
    const std::string wait_for_button =
        "echo; echo HVSTACK-LIBVIRT-MARKER; "
        "for e in /sys/class/input/event*; do "
        "grep -q 'Power Button' $e/device/name 2>/dev/null && "
        "button=/dev/input/${e##*/}; done; "
        "exec 3<$button; echo \"waiting for the power button ($button)\"; "
        "dd bs=24 count=1 of=/dev/null <&3 2>/dev/null";
    for (const auto& [out, marker, run] :
         {std::tuple{guest_.poweroff_initrd,
                     std::string("HVSTACK-LIBVIRT-MARKER"), std::string()},
          std::tuple{guest_.button_initrd, std::string("POWER-BUTTON-PRESSED"),
                     wait_for_button}}) {
      std::vector<std::string> argv = {"/bin/bash",
                                       Runfile("tests/linux/make_initramfs.sh"),
                                       "--uncompressed"};
      if (!run.empty()) {
        argv.push_back("--run");
        argv.push_back(run);
      }
      argv.push_back(out);
      argv.push_back(marker);
      absl::StatusOr<CommandResult> made = RunCommand(
          argv, {absl::StrCat("HVSTACK_INITRAMFS_MODULES=", modules)});
      if (!made.ok() || made->exit_code != 0) {
        setup_error_ =
            absl::StrCat("make_initramfs.sh: ",
                         made.ok() ? made->err : made.status().ToString());
        return;
      }
    }
  }
  static void TearDownTestSuite() {
    stop_reaper_ = true;
    if (reaper_ != nullptr) reaper_->join();
    delete reaper_;
    delete assets_;
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    root_ = dir_.path() + "/libvirt";
    std::filesystem::create_directories(root_ + "/etc");
    // /dev/kvm is root's only here: QEMU runs as root; no virtlogd; kernel
    // files keep their owners.
    std::ofstream(root_ + "/etc/qemu.conf")
        << "user = \"root\"\ngroup = \"root\"\nstdio_handler = \"file\"\n"
           "remember_owner = 0\n";
    if (std::filesystem::exists(kCapsCache)) {
      std::filesystem::create_directories(root_ + "/cache/qemu");
      std::filesystem::copy(kCapsCache, root_ + "/cache/qemu/capabilities",
                            std::filesystem::copy_options::recursive);
    }
  }

  void TearDown() override {
    if (vmms_ != nullptr) (void)vmms_->Terminate();  // Destroys its domains.
    vmms_.reset();
    // Keep the probed capabilities for the next tests.
    const std::string caps = root_ + "/cache/qemu/capabilities";
    if (!std::filesystem::exists(kCapsCache) && std::filesystem::exists(caps)) {
      std::error_code ec;
      std::filesystem::create_directories(
          std::filesystem::path(kCapsCache).parent_path(), ec);
      std::filesystem::copy(caps, kCapsCache,
                            std::filesystem::copy_options::recursive, ec);
    }
    // QEMUs a killed vmms left running in this test's root: by their pid
    // files.
    std::error_code ec;
    for (const auto& entry :
         std::filesystem::directory_iterator(root_ + "/run/qemu", ec)) {
      if (entry.path().extension() != ".pid") continue;
      pid_t pid = 0;
      std::ifstream(entry.path()) >> pid;
      if (pid > 0) kill(pid, SIGKILL);
    }
  }

  std::string Uri() const { return "qemu:///embed?root=" + root_; }

  // Fails the test (ASSERT) when vmms does not start; callers check
  // HasFatalFailure.
  void StartVmms(std::vector<std::string> args = {}) {
    if (args.empty()) args = {"--libvirt-uri", Uri()};
    std::filesystem::create_directories(dir_.path() + "/state");
    vmms_ = std::make_unique<VmmsInstance>(dir_.path() + "/state", args);
    absl::Status s = vmms_->Start();
    ASSERT_TRUE(s.ok()) << s << "\n" << vmms_->Log();
    stub_ = VmService::NewStub(grpc::CreateChannel(
        "unix:" + vmms_->socket_path(), grpc::InsecureChannelCredentials()));
  }

  grpc::Status Create(const std::string& name, const std::string& initrd,
                      hvstack::v1::Vm* vm = nullptr) {
    hvstack::v1::CreateVmRequest request;
    request.set_name(name);
    hvstack::v1::VmConfig* c = request.mutable_config();
    c->set_vcpus(1);
    c->set_memory_mib(256);
    c->set_kernel_path(guest_.kernel);
    c->set_initrd_path(initrd);
    c->set_cmdline("console=ttyS0 noxsave quiet");
    c->set_backend(hvstack::v1::BACKEND_LIBVIRT);
    c->mutable_libvirt()->set_accelerator(
        hvstack::v1::LibvirtOptions::ACCELERATOR_TCG);
    grpc::ClientContext context;
    hvstack::v1::Vm ignored;
    return stub_->CreateVm(&context, request, vm != nullptr ? vm : &ignored);
  }

  // An own-worker VM (vmms runs fake_vmwp for it: no KVM here).
  grpc::Status CreateOwn(const std::string& name) {
    hvstack::v1::CreateVmRequest request;
    request.set_name(name);
    hvstack::v1::VmConfig* c = request.mutable_config();
    c->set_vcpus(1);
    c->set_memory_mib(16);
    c->set_kernel_path(Runfile("guest/hello.elf"));
    c->set_cmdline("serve");
    grpc::ClientContext context;
    hvstack::v1::Vm ignored;
    grpc::Status s = stub_->CreateVm(&context, request, &ignored);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return s;
  }

  template <typename Request>
  grpc::Status Call(grpc::Status (VmService::Stub::*method)(
                        grpc::ClientContext*, const Request&, hvstack::v1::Vm*),
                    const std::string& name, hvstack::v1::Vm* vm = nullptr) {
    Request request;
    request.set_name(name);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(2)));
    hvstack::v1::Vm ignored;
    return (stub_.get()->*method)(&context, request,
                                  vm != nullptr ? vm : &ignored);
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

  std::string Console(const std::string& name) {
    hvstack::v1::StreamConsoleRequest request;
    request.set_name(name);
    grpc::ClientContext context;
    auto reader = stub_->StreamConsole(&context, request);
    std::string out;
    hvstack::v1::ConsoleChunk chunk;
    while (reader->Read(&chunk)) out += chunk.data();
    reader->Finish();
    return out;
  }

  // Waits until `name`'s console has `text` `count` times.
  bool AwaitConsole(const std::string& name, const std::string& text,
                    int count = 1,
                    absl::Duration timeout = absl::Seconds(120)) {
    for (absl::Time end = absl::Now() + timeout; absl::Now() < end;
         absl::SleepFor(absl::Milliseconds(200))) {
      const std::string console = Console(name);
      int seen = 0;
      for (size_t at = console.find(text); at != std::string::npos;
           at = console.find(text, at + 1)) {
        ++seen;
      }
      if (seen >= count) return true;
    }
    return false;
  }

  bool AwaitState(const std::string& name, hvstack::v1::VmState state,
                  absl::Duration timeout = absl::Seconds(60)) {
    for (absl::Time end = absl::Now() + timeout; absl::Now() < end;
         absl::SleepFor(absl::Milliseconds(50))) {
      if (Get(name).state() == state) return true;
    }
    return false;
  }

  std::vector<VmEvent> Events(const std::string& vm_name) {
    hvstack::v1::WatchEventsRequest request;
    grpc::ClientContext context;
    auto reader = stub_->WatchEvents(&context, request);
    std::vector<VmEvent> out;
    VmEvent event;
    while (reader->Read(&event)) {
      if (event.vm_name() == vm_name) out.push_back(event);
    }
    reader->Finish();
    return out;
  }

  static std::string Describe(const std::vector<VmEvent>& events) {
    std::vector<std::string> lines;
    for (const VmEvent& e : events) {
      lines.push_back(absl::StrCat(VmEvent::Kind_Name(e.kind()), " ",
                                   hvstack::v1::VmState_Name(e.state()), " \"",
                                   e.reason(), "\""));
    }
    return absl::StrJoin(lines, "\n");
  }

  absl::StatusOr<CommandResult> Virsh(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"/usr/bin/virsh", "-c", Uri()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, {}, absl::Seconds(60));
  }

  static std::string skip_;
  static std::string setup_error_;
  static TempDir* assets_;
  static Guest guest_;
  static std::thread* reaper_;
  static std::atomic<bool> stop_reaper_;

  TempDir dir_;
  std::string root_;
  std::unique_ptr<VmmsInstance> vmms_;
  std::unique_ptr<VmService::Stub> stub_;
};

std::string LibvirtTest::skip_;
std::string LibvirtTest::setup_error_;
TempDir* LibvirtTest::assets_ = nullptr;
Guest LibvirtTest::guest_;
std::thread* LibvirtTest::reaper_ = nullptr;
std::atomic<bool> LibvirtTest::stop_reaper_{false};

using hvstack::v1::VM_STATE_CRASHED;
using hvstack::v1::VM_STATE_OFF;
using hvstack::v1::VM_STATE_PAUSED;
using hvstack::v1::VM_STATE_RUNNING;
using hvstack::v1::VM_STATE_STARTING;
using hvstack::v1::VM_STATE_STOPPING;

// create, start, console, stats, pause/resume, reset, ACPI shutdown, start,
// stop, delete: each recorded, each event in WatchEvents in order.
TEST_F(LibvirtTest, LifecycleOfALinuxGuestWithEventsInOrder) {
  StartVmms();
  ASSERT_FALSE(HasFatalFailure());
  const std::string vm = "lv1";
  grpc::Status created = Create(vm, guest_.button_initrd);
  ASSERT_TRUE(created.ok()) << created.error_message() << "\n" << vmms_->Log();
  hvstack::v1::Vm shown = Get(vm);
  EXPECT_EQ(shown.libvirt().domain_name(), "hvstack-lv1");
  EXPECT_TRUE(shown.libvirt().connected());
  EXPECT_EQ(shown.libvirt().domain_state(), "shut off (unknown)");

  hvstack::v1::Vm started;
  grpc::Status s = Call(&VmService::Stub::StartVm, vm, &started);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << vmms_->Log();
  EXPECT_EQ(started.state(), VM_STATE_RUNNING);
  EXPECT_GT(started.worker_pid(), 0);
  ASSERT_TRUE(AwaitConsole(vm, "HVSTACK-LIBVIRT-MARKER")) << Console(vm) << "\n"
                                                          << vmms_->Log();
  ASSERT_TRUE(AwaitConsole(vm, "waiting for the power button")) << Console(vm);

  {
    hvstack::v1::GetVmStatsRequest request;
    request.set_name(vm);
    grpc::ClientContext context;
    hvstack::v1::VmStats stats;
    ASSERT_TRUE(stub_->GetVmStats(&context, request, &stats).ok());
    EXPECT_GT(stats.worker_cpu_time_ns(), 0u);
    EXPECT_EQ(stats.guest_memory_bytes(), 256u << 20);
    EXPECT_GT(stats.worker_rss_bytes(), 0u);
    ASSERT_EQ(stats.vps_size(), 1);
    EXPECT_GT(stats.vps(0).cpu_time_ns(), 0u);
    EXPECT_GT(stats.console_bytes(), 0u);
    EXPECT_GT(stats.uptime().seconds() + stats.uptime().nanos(), 0);
  }

  ASSERT_TRUE(Call(&VmService::Stub::PauseVm, vm).ok());
  EXPECT_EQ(Get(vm).libvirt().domain_state(), "paused (user)");
  ASSERT_TRUE(Call(&VmService::Stub::ResumeVm, vm).ok());
  hvstack::v1::Vm reset;
  s = Call(&VmService::Stub::ResetVm, vm, &reset);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(reset.reboot_count(), 1u);
  // The guest boots again: a second marker on the same console.
  ASSERT_TRUE(AwaitConsole(vm, "waiting for the power button", 2))
      << Console(vm);

  {
    hvstack::v1::ShutdownVmRequest request;
    request.set_name(vm);
    request.mutable_timeout()->set_seconds(60);
    request.set_fallback(hvstack::v1::ShutdownVmRequest::FALLBACK_FAIL);
    grpc::ClientContext context;
    hvstack::v1::Vm off;
    s = stub_->ShutdownVm(&context, request, &off);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(off.state(), VM_STATE_OFF);
    EXPECT_EQ(off.state_reason(),
              "guest shut down: shutdown requested by user (libvirt: shut off "
              "(shutdown))");
  }
  EXPECT_THAT(Console(vm), HasSubstr("POWER-BUTTON-PRESSED"));

  ASSERT_TRUE(Call(&VmService::Stub::StartVm, vm).ok());
  hvstack::v1::Vm stopped;
  ASSERT_TRUE(Call(&VmService::Stub::StopVm, vm, &stopped).ok());
  EXPECT_EQ(stopped.state(), VM_STATE_OFF);
  EXPECT_EQ(stopped.state_reason(), "stopped by user (hard power-off)");
  {
    hvstack::v1::DeleteVmRequest request;
    request.set_name(vm);
    grpc::ClientContext context;
    google::protobuf::Empty empty;
    ASSERT_TRUE(stub_->DeleteVm(&context, request, &empty).ok());
  }
  absl::StatusOr<CommandResult> list = Virsh({"list", "--all", "--name"});
  // The embedded root is vmms's while it runs: virsh cannot look, so check
  // once vmms is gone.
  (void)vmms_->Terminate();
  list = Virsh({"list", "--all", "--name"});
  ASSERT_TRUE(list.ok());
  EXPECT_THAT(list->out, ::testing::Not(HasSubstr("hvstack-lv1")));
  StartVmms();
  ASSERT_FALSE(HasFatalFailure());

  const std::vector<VmEvent> events = Events(vm);
  std::vector<std::pair<VmEvent::Kind, hvstack::v1::VmState>> got;
  for (const VmEvent& e : events) got.push_back({e.kind(), e.state()});
  using K = VmEvent;
  const std::vector<std::pair<VmEvent::Kind, hvstack::v1::VmState>> want = {
      {K::KIND_CREATED, VM_STATE_OFF},
      {K::KIND_STATE_CHANGED, VM_STATE_STARTING},
      {K::KIND_STATE_CHANGED, VM_STATE_RUNNING},
      {K::KIND_STATE_CHANGED, VM_STATE_PAUSED},
      {K::KIND_STATE_CHANGED, VM_STATE_RUNNING},
      {K::KIND_REBOOTED, VM_STATE_RUNNING},
      {K::KIND_STATE_CHANGED, VM_STATE_OFF},
      {K::KIND_STATE_CHANGED, VM_STATE_STARTING},
      {K::KIND_STATE_CHANGED, VM_STATE_RUNNING},
      {K::KIND_STATE_CHANGED, VM_STATE_STOPPING},
      {K::KIND_STATE_CHANGED, VM_STATE_OFF},
      {K::KIND_DELETED, VM_STATE_OFF},
  };
  EXPECT_EQ(got, want) << Describe(events);
}

// A guest that powers itself off: Off with libvirt's reason, at once.
TEST_F(LibvirtTest, GuestPowerOffIsRecordedWithLibvirtsReason) {
  StartVmms();
  ASSERT_FALSE(HasFatalFailure());
  grpc::Status created = Create("lv2", guest_.poweroff_initrd);
  ASSERT_TRUE(created.ok()) << created.error_message() << "\n" << vmms_->Log();
  grpc::Status s = Call(&VmService::Stub::StartVm, "lv2");
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(AwaitState("lv2", VM_STATE_OFF, absl::Seconds(120)))
      << Console("lv2");
  hvstack::v1::Vm vm = Get("lv2");
  EXPECT_EQ(vm.state_reason(),
            "guest powered off (libvirt: shut off (shutdown))");
  EXPECT_THAT(Console("lv2"), HasSubstr("HVSTACK-LIBVIRT-MARKER"));
}

// The last event of `vm_name` (WatchEvents from the start).
std::optional<VmEvent> LastEvent(const std::vector<VmEvent>& events) {
  if (events.empty()) return std::nullopt;
  return events.back();
}

// SIGKILL vmms with two libvirt VMs and two own-worker VMs (fake_vmwp: no
// KVM here) running; one domain is destroyed with virsh while vmms is down.
// The restarted vmms finds the other three running and controllable and
// records the destroyed one Off with libvirt's reason, as a state_changed
// event; a QEMU killed while vmms runs is recorded at once.
TEST_F(LibvirtTest, VmmsKilledAndRestartedFindsWhatHappenedMeanwhile) {
  const std::vector<std::string> args = {
      "--libvirt-uri", Uri(),      "--vmwp", Runfile("vmms/testing/fake_vmwp"),
      "--kvm-device",  "/dev/null"};
  StartVmms(args);
  ASSERT_FALSE(HasFatalFailure());
  for (const char* name : {"keep", "gone"}) {
    grpc::Status created = Create(name, guest_.button_initrd);
    ASSERT_TRUE(created.ok()) << created.error_message();
    grpc::Status s = Call(&VmService::Stub::StartVm, name);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  for (const char* name : {"own1", "own2"}) {
    ASSERT_TRUE(CreateOwn(name).ok());
    grpc::Status s = Call(&VmService::Stub::StartVm, name);
    ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << vmms_->Log();
  }
  ASSERT_TRUE(AwaitConsole("keep", "waiting for the power button"))
      << Console("keep");
  vmms_->Kill();
  // libvirt's embedded driver in virsh takes the root over (vmms is gone).
  // Its reconnect sometimes stops a domain itself ("shut off (daemon)"),
  // which is then what vmms must find.
  absl::StatusOr<CommandResult> destroyed = Virsh({"destroy", "hvstack-gone"});
  ASSERT_TRUE(destroyed.ok());
  if (destroyed->exit_code != 0) {
    EXPECT_THAT(destroyed->err, HasSubstr("domain is not running"));
  }
  StartVmms(args);
  ASSERT_FALSE(HasFatalFailure());

  for (const char* name : {"keep", "own1", "own2"}) {
    hvstack::v1::Vm vm = Get(name);
    EXPECT_EQ(vm.state(), VM_STATE_RUNNING)
        << name << ": " << vm.state_reason() << "\n"
        << vmms_->Log();
  }
  hvstack::v1::Vm gone = Get("gone");
  EXPECT_EQ(gone.state(), VM_STATE_OFF);
  const std::string want_reason =
      destroyed->exit_code == 0
          ? "domain destroyed outside vmms (libvirt: shut off (destroyed)) "
            "(while vmms was down)"
          : gone.state_reason();
  EXPECT_EQ(gone.state_reason(), want_reason);
  EXPECT_THAT(gone.state_reason(), HasSubstr("(libvirt: shut off ("));
  EXPECT_THAT(gone.state_reason(), HasSubstr("(while vmms was down)"));
  // The event log has it, once, as the VM's last event.
  {
    const std::vector<VmEvent> events = Events("gone");
    std::optional<VmEvent> last = LastEvent(events);
    ASSERT_TRUE(last.has_value());
    EXPECT_EQ(last->kind(), VmEvent::KIND_STATE_CHANGED) << Describe(events);
    EXPECT_EQ(last->state(), VM_STATE_OFF) << Describe(events);
    EXPECT_EQ(last->reason(), gone.state_reason()) << Describe(events);
    int offs = 0;
    for (const VmEvent& e : events) offs += e.state() == VM_STATE_OFF;
    EXPECT_EQ(offs, 2) << Describe(events);  // Created Off, then this.
  }
  // Nothing was recorded for the VMs that kept running.
  EXPECT_EQ(LastEvent(Events("keep"))->state(), VM_STATE_RUNNING)
      << Describe(Events("keep"));
  // All controllable, console included.
  for (const char* name : {"keep", "own1"}) {
    grpc::Status s = Call(&VmService::Stub::PauseVm, name);
    ASSERT_TRUE(s.ok()) << name << ": " << s.error_message();
    s = Call(&VmService::Stub::ResumeVm, name);
    ASSERT_TRUE(s.ok()) << name << ": " << s.error_message();
  }
  grpc::Status s = Call(&VmService::Stub::StopVm, "own2");
  ASSERT_TRUE(s.ok()) << s.error_message();
  // A domain destroyed behind vmms's back while it runs: recorded at once,
  // with libvirt's reason.
  s = Call(&VmService::Stub::StartVm, "gone");
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(AwaitConsole("gone", "waiting for the power button"))
      << Console("gone");
  // The embedded root is vmms's while it runs; another process cannot open
  // it, so this destroys the QEMU process instead (as an OOM kill would).
  const int64_t pid = Get("keep").worker_pid();
  ASSERT_GT(pid, 0);
  kill(static_cast<pid_t>(pid), SIGKILL);
  ASSERT_TRUE(AwaitState("keep", VM_STATE_CRASHED, absl::Seconds(30)) ||
              Get("keep").state() == VM_STATE_OFF)
      << Get("keep").state_reason();
  EXPECT_THAT(Get("keep").state_reason(), HasSubstr("(libvirt: shut off"));
  EXPECT_EQ(LastEvent(Events("keep"))->reason(), Get("keep").state_reason());
  EXPECT_EQ(Get("gone").state(), VM_STATE_RUNNING);
}

// The connection to libvirt is lost for real (a private libvirtd, SIGKILLed):
// vmms notices (libvirt's close callback), calls about libvirt VMs are
// UNAVAILABLE naming the URI while own-worker VMs carry on, and when libvirtd
// is back vmms reconnects by itself (backoff) and records what happened
// meanwhile: a QEMU killed while libvirtd was down is recorded with libvirt's
// reason; the other VM is found running and is controllable.
TEST_F(LibvirtTest, LostConnectionIsReconciledAfterReconnect) {
  if (RunCommand({"/usr/bin/unshare", "-m", "/bin/true"})
          .value_or(CommandResult{})
          .exit_code != 0) {
    GTEST_SKIP() << "needs mount namespaces (unshare -m) for a private "
                    "libvirtd";
  }
  PrivateLibvirtd libvirtd(dir_.path() + "/libvirtd");
  absl::Status up = libvirtd.Start();
  ASSERT_TRUE(up.ok()) << up;
  const std::string uri = libvirtd.Uri();
  StartVmms({"--libvirt-uri", uri, "--vmwp", Runfile("vmms/testing/fake_vmwp"),
             "--kvm-device", "/dev/null"});
  ASSERT_FALSE(HasFatalFailure());
  for (const char* name : {"stays", "dies"}) {
    grpc::Status created = Create(name, guest_.button_initrd);
    ASSERT_TRUE(created.ok()) << created.error_message() << "\n"
                              << vmms_->Log();
    grpc::Status s = Call(&VmService::Stub::StartVm, name);
    ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << vmms_->Log();
  }
  ASSERT_TRUE(CreateOwn("own").ok());
  ASSERT_TRUE(Call(&VmService::Stub::StartVm, "own").ok());
  ASSERT_TRUE(AwaitConsole("stays", "waiting for the power button"))
      << Console("stays");
  const pid_t dies_qemu = libvirtd.QemuPid("hvstack-dies");
  ASSERT_GT(dies_qemu, 0);

  libvirtd.Kill();
  auto connected = [&] {
    grpc::ClientContext context;
    hvstack::v1::HostInfo info;
    grpc::Status s =
        stub_->GetHostInfo(&context, hvstack::v1::GetHostInfoRequest(), &info);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return info.libvirt_connected();
  };
  bool lost = false;
  for (absl::Time end = absl::Now() + absl::Seconds(30);
       !lost && absl::Now() < end; absl::SleepFor(absl::Milliseconds(50))) {
    lost = !connected();
  }
  ASSERT_TRUE(lost) << "vmms did not notice libvirtd's end\n" << vmms_->Log();
  // Only libvirt VMs' calls fail, naming the URI.
  grpc::Status s = Call(&VmService::Stub::PauseVm, "stays");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr(uri));
  hvstack::v1::Vm shown = Get("stays");
  EXPECT_FALSE(shown.libvirt().connected());
  EXPECT_EQ(shown.state(), VM_STATE_RUNNING);
  EXPECT_TRUE(Call(&VmService::Stub::PauseVm, "own").ok());
  EXPECT_TRUE(Call(&VmService::Stub::ResumeVm, "own").ok());
  // Meanwhile one domain's QEMU dies.
  kill(dies_qemu, SIGKILL);
  for (absl::Time end = absl::Now() + absl::Seconds(10);
       absl::Now() < end && kill(dies_qemu, 0) == 0;) {
    absl::SleepFor(absl::Milliseconds(20));
  }

  up = libvirtd.Start();
  ASSERT_TRUE(up.ok()) << up;
  bool back = false;
  for (absl::Time end = absl::Now() + absl::Seconds(30);
       !back && absl::Now() < end; absl::SleepFor(absl::Milliseconds(50))) {
    back = connected();
  }
  ASSERT_TRUE(back) << "vmms did not reconnect\n" << vmms_->Log();
  ASSERT_TRUE(AwaitState("dies", VM_STATE_OFF, absl::Seconds(10)) ||
              Get("dies").state() == VM_STATE_CRASHED)
      << Get("dies").state_reason() << "\n"
      << vmms_->Log();
  hvstack::v1::Vm dies = Get("dies");
  EXPECT_THAT(dies.state_reason(), HasSubstr("(libvirt: shut off ("));
  EXPECT_THAT(dies.state_reason(),
              HasSubstr("(while vmms was not connected to libvirt)"));
  const std::vector<VmEvent> events = Events("dies");
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().kind(), VmEvent::KIND_STATE_CHANGED)
      << Describe(events);
  EXPECT_EQ(events.back().reason(), dies.state_reason()) << Describe(events);

  EXPECT_EQ(Get("stays").state(), VM_STATE_RUNNING)
      << Get("stays").state_reason();
  EXPECT_EQ(Events("stays").back().state(), VM_STATE_RUNNING)
      << Describe(Events("stays"));
  s = Call(&VmService::Stub::PauseVm, "stays");
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Get("stays").libvirt().domain_state(), "paused (user)");
  ASSERT_TRUE(Call(&VmService::Stub::ResumeVm, "stays").ok());
  // The console stream of the new connection works: a reset boots again.
  ASSERT_TRUE(Call(&VmService::Stub::ResetVm, "stays").ok());
  ASSERT_TRUE(AwaitConsole("stays", "waiting for the power button", 2))
      << Console("stays");
  // virsh destroy behind vmms's back while it runs: recorded at once, with
  // libvirt's reason.
  absl::StatusOr<CommandResult> destroyed =
      RunCommand({"/usr/bin/virsh", "-c", uri, "destroy", "hvstack-stays"});
  ASSERT_TRUE(destroyed.ok() && destroyed->exit_code == 0)
      << (destroyed.ok() ? destroyed->err : destroyed.status().ToString());
  ASSERT_TRUE(AwaitState("stays", VM_STATE_OFF, absl::Seconds(10)))
      << Get("stays").state_reason();
  EXPECT_EQ(Get("stays").state_reason(),
            "domain destroyed outside vmms (libvirt: shut off (destroyed))");
  EXPECT_EQ(Events("stays").back().reason(), Get("stays").state_reason());
  (void)vmms_->Terminate();
  vmms_.reset();
}

// Adoption: domains defined outside vmms are listed, adopted with their XML
// kept as is, driven like any VM, and released back unchanged; bad input
// (unknown domain, already adopted, name taken, bad name, hardware change,
// releasing an own-worker VM or an unknown VM) is refused naming the problem.
TEST_F(LibvirtTest, AdoptionListsAdoptsAndReleasesDomainsAsTheyAre) {
  // Two foreign domains, defined (and one started) with virsh before vmms
  // takes the embedded root.
  for (const char* name : {"ext-run", "ext-off"}) {
    const std::string xml = absl::StrCat(dir_.path(), "/", name, ".xml");
    std::ofstream(xml)
        << "<domain type='qemu'><name>" << name << "</name>"
        << "<memory unit='MiB'>256</memory><vcpu>1</vcpu><os><type "
           "arch='x86_64' machine='pc'>hvm</type><kernel>"
        << guest_.kernel << "</kernel><initrd>" << guest_.button_initrd
        << "</initrd><cmdline>console=ttyS0 noxsave quiet</cmdline></os>"
        << "<features><acpi/></features><devices><controller type='usb' "
           "model='none'/><serial type='pty'><target port='0'/></serial>"
           "<memballoon model='none'/></devices></domain>";
    absl::StatusOr<CommandResult> defined = Virsh({"define", xml});
    ASSERT_TRUE(defined.ok() && defined->exit_code == 0)
        << (defined.ok() ? defined->err : defined.status().ToString());
  }
  absl::StatusOr<CommandResult> run = Virsh({"start", "ext-run"});
  ASSERT_TRUE(run.ok() && run->exit_code == 0)
      << (run.ok() ? run->err : run.status().ToString());
  absl::StatusOr<CommandResult> xml_before = Virsh({"dumpxml", "ext-run"});
  ASSERT_TRUE(xml_before.ok());
  const std::string ro_socket = dir_.path() + "/ro.sock";
  StartVmms({"--libvirt-uri", Uri(), "--readonly-socket", ro_socket});
  ASSERT_FALSE(HasFatalFailure());
  // The read-only socket lists libvirt's domains but adopts and releases
  // nothing (access_test checks every changing RPC the same way, with KVM).
  auto ro = VmService::NewStub(grpc::CreateChannel(
      "unix:" + ro_socket, grpc::InsecureChannelCredentials()));
  auto expect_read_only_refusal = [](const grpc::Status& s,
                                     const std::string& method) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << method << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("read-only socket"));
    EXPECT_THAT(s.error_message(), HasSubstr(method));
  };
  {
    grpc::ClientContext context;
    hvstack::v1::ListLibvirtDomainsResponse domains;
    grpc::Status s = ro->ListLibvirtDomains(
        &context, hvstack::v1::ListLibvirtDomainsRequest(), &domains);
    ASSERT_TRUE(s.ok()) << s.error_message();
    std::vector<std::string> names;
    for (const auto& d : domains.domains()) names.push_back(d.name());
    EXPECT_THAT(names, ::testing::ElementsAre("ext-off", "ext-run"));
  }
  {
    hvstack::v1::AdoptLibvirtDomainRequest request;
    request.set_domain("ext-off");
    grpc::ClientContext context;
    hvstack::v1::Vm ignored;
    expect_read_only_refusal(
        ro->AdoptLibvirtDomain(&context, request, &ignored),
        "AdoptLibvirtDomain");
    EXPECT_TRUE(Events("ext-off").empty());
  }
  auto vmctl = [&](const std::vector<std::string>& args) {
    absl::StatusOr<CommandResult> r = vmms_->Vmctl(args);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CommandResult{};
  };
  ASSERT_TRUE(Create("mine", guest_.poweroff_initrd).ok());
  CommandResult listed = vmctl({"libvirt", "list"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("ext-run"));
  EXPECT_THAT(listed.out, HasSubstr("running (booted)"));
  EXPECT_THAT(listed.out, HasSubstr("ext-off"));
  EXPECT_THAT(listed.out, ::testing::Not(HasSubstr("hvstack-mine")));

  auto adopt = [&](const std::string& domain, const std::string& name,
                   hvstack::v1::Vm* vm = nullptr) {
    hvstack::v1::AdoptLibvirtDomainRequest request;
    request.set_domain(domain);
    request.set_name(name);
    grpc::ClientContext context;
    hvstack::v1::Vm ignored;
    return stub_->AdoptLibvirtDomain(&context, request,
                                     vm != nullptr ? vm : &ignored);
  };
  grpc::Status s = adopt("nope", "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("no domain 'nope'"));

  CommandResult adopted =
      vmctl({"libvirt", "adopt", "ext-run", "--name", "web"});
  ASSERT_EQ(adopted.exit_code, 0) << adopted.err << "\n" << vmms_->Log();
  EXPECT_THAT(adopted.out, HasSubstr("ext-run (adopted"));
  hvstack::v1::Vm web = Get("web");
  EXPECT_EQ(web.state(), VM_STATE_RUNNING) << web.state_reason();
  EXPECT_TRUE(web.libvirt().adopted());
  EXPECT_EQ(web.libvirt().domain_name(), "ext-run");
  EXPECT_EQ(web.config().memory_mib(), 256u);
  {
    const std::vector<VmEvent> events = Events("web");
    ASSERT_GE(events.size(), 1u);
    EXPECT_EQ(events[0].kind(), VmEvent::KIND_CREATED);
    EXPECT_EQ(events[0].reason(), "adopted from libvirt (domain ext-run)");
    EXPECT_EQ(events.back().state(), VM_STATE_RUNNING) << Describe(events);
  }

  s = adopt("ext-run", "web2");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(s.error_message(),
              HasSubstr("already managed by vmms as VM 'web'"));
  s = adopt("ext-off", "web");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(s.error_message(), HasSubstr("VM 'web' already exists"));
  s = adopt("ext-off", "bad name!");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  s = adopt("", "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  hvstack::v1::Vm ext_off;
  s = adopt("ext-off", "", &ext_off);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(ext_off.name(), "ext-off");
  EXPECT_EQ(ext_off.state(), VM_STATE_OFF);
  listed = vmctl({"libvirt", "list"});
  EXPECT_THAT(listed.out, ::testing::Not(HasSubstr("ext-")));

  // Hardware is libvirt's.
  {
    hvstack::v1::UpdateVmRequest request;
    request.set_name("web");
    request.mutable_config()->set_memory_mib(512);
    request.mutable_update_mask()->add_paths("memory_mib");
    grpc::ClientContext context;
    hvstack::v1::Vm ignored;
    s = stub_->UpdateVm(&context, request, &ignored);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(s.error_message(), HasSubstr("adopted libvirt domain"));
  }
  // Driven like any VM; a start does not redefine it.
  ASSERT_TRUE(Call(&VmService::Stub::PauseVm, "web").ok());
  ASSERT_TRUE(Call(&VmService::Stub::ResumeVm, "web").ok());
  hvstack::v1::Vm stopped;
  ASSERT_TRUE(Call(&VmService::Stub::StopVm, "web", &stopped).ok());
  EXPECT_EQ(stopped.state(), VM_STATE_OFF);
  s = Call(&VmService::Stub::StartVm, "web");
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(AwaitConsole("web", "waiting for the power button"))
      << Console("web");

  // Release: bad input first.
  CommandResult bad = vmctl({"libvirt", "release", "nosuchvm"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("'nosuchvm' not found"));
  ASSERT_TRUE(CreateOwn("own").ok());
  bad = vmctl({"libvirt", "release", "own"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("hvstack's own backend"));
  {
    hvstack::v1::ReleaseLibvirtDomainRequest request;
    request.set_name("web");
    grpc::ClientContext context;
    hvstack::v1::ReleaseLibvirtDomainResponse ignored;
    expect_read_only_refusal(
        ro->ReleaseLibvirtDomain(&context, request, &ignored),
        "ReleaseLibvirtDomain");
    EXPECT_EQ(Get("web").state(), VM_STATE_RUNNING);
  }
  CommandResult released = vmctl({"libvirt", "release", "web"});
  ASSERT_EQ(released.exit_code, 0) << released.err;
  EXPECT_THAT(released.out, HasSubstr("ext-run"));
  {
    hvstack::v1::GetVmRequest request;
    request.set_name("web");
    grpc::ClientContext context;
    hvstack::v1::Vm vm;
    EXPECT_EQ(stub_->GetVm(&context, request, &vm).error_code(),
              grpc::StatusCode::NOT_FOUND);
    const std::vector<VmEvent> events = Events("web");
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().kind(), VmEvent::KIND_DELETED);
    EXPECT_EQ(events.back().reason(),
              "released to libvirt (domain ext-run kept as it is)");
  }
  listed = vmctl({"libvirt", "list"});
  EXPECT_THAT(listed.out, HasSubstr("ext-run"));
  EXPECT_THAT(listed.out, HasSubstr("running"));
  // vmms's end stops its own libvirt VMs, not a released domain; its XML is
  // what it was.
  (void)vmms_->Terminate();
  vmms_.reset();
  absl::StatusOr<CommandResult> state = Virsh({"domstate", "ext-run"});
  ASSERT_TRUE(state.ok());
  EXPECT_THAT(state->out, HasSubstr("running"));
  absl::StatusOr<CommandResult> xml_after =
      Virsh({"dumpxml", "--inactive", "ext-run"});
  ASSERT_TRUE(xml_after.ok());
  EXPECT_THAT(xml_after->out, ::testing::Not(HasSubstr("hvstack.dev")));
  EXPECT_THAT(xml_after->out, HasSubstr("<name>ext-run</name>"));
  (void)Virsh({"destroy", "ext-run"});
}

// VmConfig's hardware on libvirt: a raw and a qcow2 disk and a bridged
// adapter reach QEMU (its command line has the images and the VM's MAC);
// what libvirt VMs cannot have (VHDX, an unattached adapter, hardware of an
// adopted domain) is refused at
// create/update/attach with FAILED_PRECONDITION naming it.
TEST_F(LibvirtTest, HardwareMapsToTheDomainOrIsRefusedNamingIt) {
  absl::Status netns = EnterPrivateNetworkNamespace();
  if (netns.ok()) netns = AddBridge("br0");
  if (!netns.ok()) GTEST_SKIP() << netns;
  const std::string raw = dir_.path() + "/a.raw";
  const std::string qcow2 = dir_.path() + "/b.qcow2";
  const std::string vhdx = dir_.path() + "/c.vhdx";
  for (const auto& [path, format] :
       {std::pair{raw, "raw"}, {qcow2, "qcow2"}, {vhdx, "vhdx"}}) {
    absl::StatusOr<CommandResult> made = RunCommand(
        {"/usr/bin/qemu-img", "create", "-q", "-f", format, path, "16M"});
    ASSERT_TRUE(made.ok() && made->exit_code == 0)
        << (made.ok() ? made->err : made.status().ToString());
  }
  StartVmms();
  ASSERT_FALSE(HasFatalFailure());
  auto create = [&](const std::string& name,
                    const std::function<void(hvstack::v1::VmConfig*)>& edit,
                    hvstack::v1::Vm* vm = nullptr) {
    hvstack::v1::CreateVmRequest request;
    request.set_name(name);
    hvstack::v1::VmConfig* c = request.mutable_config();
    c->set_vcpus(1);
    c->set_memory_mib(256);
    c->set_kernel_path(guest_.kernel);
    c->set_initrd_path(guest_.button_initrd);
    c->set_cmdline("console=ttyS0 noxsave quiet");
    c->set_backend(hvstack::v1::BACKEND_LIBVIRT);
    c->mutable_libvirt()->set_accelerator(
        hvstack::v1::LibvirtOptions::ACCELERATOR_TCG);
    edit(c);
    grpc::ClientContext context;
    hvstack::v1::Vm ignored;
    return stub_->CreateVm(&context, request, vm != nullptr ? vm : &ignored);
  };
  auto add_disk = [](hvstack::v1::VmConfig* c, const std::string& path,
                     hvstack::v1::DiskFormat format) {
    hvstack::v1::Disk* d = c->add_disks();
    d->set_path(path);
    d->set_format(format);
  };
  hvstack::v1::Vm hw;
  grpc::Status s = create(
      "hw",
      [&](hvstack::v1::VmConfig* c) {
        add_disk(c, raw, hvstack::v1::DISK_FORMAT_RAW);
        add_disk(c, qcow2, hvstack::v1::DISK_FORMAT_QCOW2);
        c->add_nics()->set_bridge("br0");
      },
      &hw);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << vmms_->Log();
  ASSERT_EQ(hw.config().nics_size(), 1);
  const std::string mac = hw.config().nics(0).mac();
  ASSERT_FALSE(mac.empty());
  s = Call(&VmService::Stub::StartVm, "hw");
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << vmms_->Log();
  const int64_t qemu = Get("hw").worker_pid();
  ASSERT_GT(qemu, 0);
  std::string cmdline =
      ReadFileOrEmpty(absl::StrCat("/proc/", qemu, "/cmdline"));
  std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
  EXPECT_THAT(cmdline, HasSubstr(raw));
  EXPECT_THAT(cmdline, HasSubstr(qcow2));
  EXPECT_THAT(cmdline, HasSubstr("virtio-scsi"));
  EXPECT_THAT(cmdline, HasSubstr(mac));
  EXPECT_THAT(cmdline, HasSubstr("pvpanic"));
  ASSERT_TRUE(AwaitConsole("hw", "waiting for the power button"))
      << Console("hw");
  ASSERT_TRUE(Call(&VmService::Stub::StopVm, "hw").ok());

  // Refused, each naming what.
  s = create("v", [&](hvstack::v1::VmConfig* c) {
    add_disk(c, vhdx, hvstack::v1::DISK_FORMAT_VHDX);
  });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr(vhdx));
  s = create("n", [](hvstack::v1::VmConfig* c) { c->add_nics(); });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("network adapter 0"));
  for (const char* name : {"v", "n"}) EXPECT_TRUE(Events(name).empty());
  // The crash policy is the domain's <on_crash> (redefined while Off).
  EXPECT_THAT(ReadFileOrEmpty(root_ + "/etc/qemu/hvstack-hw.xml"),
              HasSubstr("<on_crash>destroy</on_crash>"));
  {
    hvstack::v1::UpdateVmRequest request;
    request.set_name("hw");
    request.mutable_config()->set_on_guest_crash(
        hvstack::v1::GUEST_CRASH_POLICY_RESTART);
    request.mutable_update_mask()->add_paths("on_guest_crash");
    grpc::ClientContext context;
    hvstack::v1::Vm ignored;
    s = stub_->UpdateVm(&context, request, &ignored);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  EXPECT_THAT(ReadFileOrEmpty(root_ + "/etc/qemu/hvstack-hw.xml"),
              HasSubstr("<on_crash>restart</on_crash>"));
  {
    hvstack::v1::AddNicRequest request;
    request.set_name("hw");
    grpc::ClientContext context;
    hvstack::v1::Vm ignored;
    s = stub_->AddNic(&context, request, &ignored);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(s.error_message(), HasSubstr("unattached TAP"));
  }
  {
    hvstack::v1::AttachDiskRequest request;
    request.set_name("hw");
    request.mutable_disk()->set_path(vhdx);
    request.mutable_disk()->set_format(hvstack::v1::DISK_FORMAT_VHDX);
    grpc::ClientContext context;
    hvstack::v1::Vm ignored;
    s = stub_->AttachDisk(&context, request, &ignored);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(s.error_message(), HasSubstr("VHDX"));
  }
  EXPECT_EQ(Get("hw").config().disks_size(), 2);
  EXPECT_EQ(Get("hw").config().nics_size(), 1);

  // A Linux panic reported through the pvpanic device (Debian's pvpanic
  // module), under each on_guest_crash policy, three guests at once:
  // stop ends the domain and the VM is Crashed; restart resets the guest
  // (libvirt's <on_crash>restart) and the VM stays Running, one reboot more;
  // preserve keeps the domain crashed (paused) and the VM Paused until
  // resumed or stopped. Each records a guest_crashed event first.
  const std::string kernel_dir = assets_->path() + "/kernel";
  std::string release = ReadFileOrEmpty(kernel_dir + "/kernel-release");
  release.erase(release.find_last_not_of("\n") + 1);
  const std::string pvpanic =
      absl::StrCat(kernel_dir, "/root/lib/modules/", release,
                   "/kernel/drivers/misc/pvpanic/");
  const std::string crash_initrd = dir_.path() + "/crash.cpio";
  absl::StatusOr<CommandResult> made = RunCommand(
      {"/bin/bash", Runfile("tests/linux/make_initramfs.sh"), "--uncompressed",
       "--run", "echo PANICKING-NOW; echo c > /proc/sysrq-trigger",
       crash_initrd, "NEVER-PRINTED"},
      {absl::StrCat("HVSTACK_INITRAMFS_MODULES=", pvpanic, "pvpanic.ko ",
                    pvpanic, "pvpanic-mmio.ko")});
  ASSERT_TRUE(made.ok() && made->exit_code == 0)
      << (made.ok() ? made->err : made.status().ToString());
  for (const auto& [name, policy] :
       {std::pair{"crash", hvstack::v1::GUEST_CRASH_POLICY_STOP},
        {"crash-restart", hvstack::v1::GUEST_CRASH_POLICY_RESTART},
        {"crash-keep", hvstack::v1::GUEST_CRASH_POLICY_PRESERVE}}) {
    s = create(name, [&](hvstack::v1::VmConfig* c) {
      c->set_initrd_path(crash_initrd);
      c->set_on_guest_crash(policy);
    });
    ASSERT_TRUE(s.ok()) << name << ": " << s.error_message();
    s = Call(&VmService::Stub::StartVm, name);
    ASSERT_TRUE(s.ok()) << name << ": " << s.error_message();
  }
  auto kinds = [&](const std::string& name) {
    std::vector<VmEvent::Kind> out;
    for (const VmEvent& e : Events(name)) out.push_back(e.kind());
    return out;
  };
  ASSERT_TRUE(AwaitState("crash", VM_STATE_CRASHED, absl::Seconds(120)))
      << Get("crash").state_reason() << "\n"
      << Console("crash");
  // The guest's panic line, as own workers record it; libvirt reports the
  // panic (crashed (panicked)), then destroys the domain (shut off
  // (crashed)): vmms records whichever state it reads first.
  EXPECT_THAT(
      Get("crash").state_reason(),
      ::testing::AnyOf(
          "guest crashed: Kernel panic - not syncing: sysrq triggered crash "
          "(libvirt: crashed (panicked))",
          "guest crashed: Kernel panic - not syncing: sysrq triggered crash "
          "(libvirt: shut off (crashed))"));
  EXPECT_THAT(Console("crash"), HasSubstr("PANICKING-NOW"));
  EXPECT_EQ(Events("crash").back().state(), VM_STATE_CRASHED);
  EXPECT_THAT(kinds("crash"), ::testing::Contains(VmEvent::KIND_GUEST_CRASHED))
      << Describe(Events("crash"));
  EXPECT_THAT(Get("crash").last_guest_crash().summary(),
              HasSubstr("Kernel panic"));

  // preserve: Paused "guest crashed: ...", the domain crashed (panicked);
  // ResumeVm lets it run on, StopVm ends it.
  ASSERT_TRUE(AwaitState("crash-keep", hvstack::v1::VM_STATE_PAUSED,
                         absl::Seconds(120)))
      << Get("crash-keep").state_reason() << "\n"
      << Describe(Events("crash-keep")) << "\n"
      << Console("crash-keep");
  {
    const hvstack::v1::Vm kept = Get("crash-keep");
    EXPECT_THAT(kept.state_reason(), ::testing::StartsWith("guest crashed: "));
    EXPECT_THAT(kept.state_reason(), HasSubstr("Kernel panic"));
    EXPECT_EQ(kept.libvirt().domain_state(), "crashed (panicked)");
    EXPECT_THAT(kept.last_guest_crash().message(), HasSubstr("PANICKING-NOW"));
    const std::vector<VmEvent> events = Events("crash-keep");
    ASSERT_GE(events.size(), 2u);
    EXPECT_EQ(events[events.size() - 2].kind(), VmEvent::KIND_GUEST_CRASHED)
        << Describe(events);
    EXPECT_EQ(events.back().state(), hvstack::v1::VM_STATE_PAUSED);
  }
  s = Call(&VmService::Stub::ResumeVm, "crash-keep");
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Get("crash-keep").state(), VM_STATE_RUNNING);
  EXPECT_EQ(Get("crash-keep").libvirt().domain_state(), "running (unpaused)");
  hvstack::v1::Vm kept_off;
  ASSERT_TRUE(Call(&VmService::Stub::StopVm, "crash-keep", &kept_off).ok());
  EXPECT_EQ(kept_off.state(), VM_STATE_OFF);

  // restart: still Running after the crash, one reboot recorded for it, and
  // the guest boots again (its second panic line on the same console).
  ASSERT_TRUE(AwaitConsole("crash-restart", "PANICKING-NOW", 2))
      << Describe(Events("crash-restart")) << "\n"
      << Console("crash-restart");
  {
    const hvstack::v1::Vm restarted = Get("crash-restart");
    EXPECT_EQ(restarted.state(), VM_STATE_RUNNING) << restarted.state_reason();
    EXPECT_GE(restarted.reboot_count(), 1u);
    EXPECT_THAT(restarted.last_guest_crash().summary(),
                HasSubstr("Kernel panic"));
    const std::vector<VmEvent> events = Events("crash-restart");
    auto crashed = std::find_if(events.begin(), events.end(), [](auto& e) {
      return e.kind() == VmEvent::KIND_GUEST_CRASHED;
    });
    ASSERT_NE(crashed, events.end()) << Describe(events);
    ASSERT_NE(crashed + 1, events.end()) << Describe(events);
    EXPECT_EQ((crashed + 1)->kind(), VmEvent::KIND_REBOOTED)
        << Describe(events);
    EXPECT_THAT((crashed + 1)->reason(),
                ::testing::StartsWith("guest rebooted: guest crashed: "));
    for (const VmEvent& e : events) {
      EXPECT_NE(e.state(), VM_STATE_CRASHED) << Describe(events);
    }
  }
  ASSERT_TRUE(Call(&VmService::Stub::StopVm, "crash-restart").ok());
}

// backend libvirt without --libvirt-uri; an unreachable URI; a domain libvirt
// refuses to define. Nothing is recorded for any of them.
TEST_F(LibvirtTest, BadInputIsRefusedWithAClearError) {
  StartVmms({"--no-sandbox"});
  ASSERT_FALSE(HasFatalFailure());
  grpc::Status s = Create("nolv", guest_.poweroff_initrd);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("--libvirt-uri"));
  EXPECT_TRUE(Events("nolv").empty());
  (void)vmms_->Terminate();

  const std::string unreachable =
      "qemu+unix:///system?socket=" + dir_.path() + "/no-libvirtd.sock";
  StartVmms({"--libvirt-uri", unreachable});
  ASSERT_FALSE(HasFatalFailure());
  s = Create("far", guest_.poweroff_initrd);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr(unreachable));
  EXPECT_THAT(s.error_message(), HasSubstr("retry"));
  EXPECT_TRUE(Events("far").empty());
  {
    grpc::ClientContext context;
    hvstack::v1::HostInfo info;
    ASSERT_TRUE(
        stub_->GetHostInfo(&context, hvstack::v1::GetHostInfoRequest(), &info)
            .ok());
    EXPECT_EQ(info.libvirt_uri(), unreachable);
    EXPECT_FALSE(info.libvirt_connected());
    EXPECT_FALSE(info.libvirt_error().empty());
  }
  (void)vmms_->Terminate();

  // A foreign domain already has the name vmms would give VM "clash".
  const std::string xml = dir_.path() + "/foreign.xml";
  std::ofstream(xml) << "<domain type='qemu'><name>hvstack-clash</name>"
                        "<memory unit='MiB'>64</memory><os><type "
                        "arch='x86_64' machine='pc'>hvm</type></os></domain>";
  absl::StatusOr<CommandResult> defined = Virsh({"define", xml});
  ASSERT_TRUE(defined.ok() && defined->exit_code == 0)
      << (defined.ok() ? defined->err : defined.status().ToString());
  StartVmms();
  ASSERT_FALSE(HasFatalFailure());
  s = Create("clash", guest_.poweroff_initrd);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("libvirt refused"));
  EXPECT_THAT(s.error_message(), HasSubstr("hvstack-clash"));
  EXPECT_LT(s.error_message().size(), 1024u);
  EXPECT_TRUE(Events("clash").empty());
}

// The rest of what a libvirt VM does as own workers do: UpdateVm while Off
// (the domain follows), console input through AttachConsole, ListVms and
// ListVmStats, `vmctl show` / `hostinfo` naming the backend and the
// connection, the restart policy after its QEMU is killed, ShutdownVm's
// fallback when the guest ignores the power button, autostart when vmms
// starts. One guest that echoes a console line and then idles (no ACPI
// button driver: it ignores the power button).
TEST_F(LibvirtTest, ConsoleInputListsPoliciesAndShutdownFallback) {
  const std::string initrd = dir_.path() + "/io.cpio";
  absl::StatusOr<CommandResult> made = RunCommand(
      {"/bin/bash", Runfile("tests/linux/make_initramfs.sh"), "--uncompressed",
       "--run",
       "echo READY-FOR-INPUT; read line; echo \"GOT:$line\"; sleep 100000",
       initrd, "NEVER-PRINTED"});
  ASSERT_TRUE(made.ok() && made->exit_code == 0)
      << (made.ok() ? made->err : made.status().ToString());
  StartVmms();
  ASSERT_FALSE(HasFatalFailure());
  const std::string vm = "io";
  ASSERT_TRUE(Create(vm, initrd).ok());
  {
    hvstack::v1::UpdateVmRequest request;
    request.set_name(vm);
    request.mutable_config()->set_memory_mib(320);
    request.mutable_config()->set_autostart(true);
    request.mutable_config()->set_restart_policy(
        hvstack::v1::RESTART_POLICY_ON_FAILURE);
    for (const char* path : {"memory_mib", "autostart", "restart_policy"}) {
      request.mutable_update_mask()->add_paths(path);
    }
    grpc::ClientContext context;
    hvstack::v1::Vm updated;
    grpc::Status s = stub_->UpdateVm(&context, request, &updated);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(updated.config().memory_mib(), 320u);
  }
  // libvirt keeps memory in KiB.
  EXPECT_THAT(ReadFileOrEmpty(root_ + "/etc/qemu/hvstack-io.xml"),
              HasSubstr("<memory unit='KiB'>327680</memory>"));
  grpc::Status s = Call(&VmService::Stub::StartVm, vm);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << vmms_->Log();
  ASSERT_TRUE(AwaitConsole(vm, "READY-FOR-INPUT")) << Console(vm);

  // Console input reaches the guest, its answer comes back on the stream.
  {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    auto stream = stub_->AttachConsole(&context);
    hvstack::v1::AttachConsoleRequest first;
    first.set_name(vm);
    ASSERT_TRUE(stream->Write(first));
    hvstack::v1::AttachConsoleRequest input;
    input.set_data("hello-from-vmctl\n");
    ASSERT_TRUE(stream->Write(input));
    std::string seen;
    hvstack::v1::ConsoleChunk chunk;
    while (!absl::StrContains(seen, "GOT:hello-from-vmctl") &&
           stream->Read(&chunk)) {
      seen += chunk.data();
    }
    EXPECT_THAT(seen, HasSubstr("GOT:hello-from-vmctl"));
    stream->WritesDone();
    context.TryCancel();
    (void)stream->Finish();
  }

  // Lists and stats carry it; vmctl names the backend and the connection.
  {
    grpc::ClientContext context;
    hvstack::v1::ListVmsResponse list;
    ASSERT_TRUE(
        stub_->ListVms(&context, hvstack::v1::ListVmsRequest(), &list).ok());
    ASSERT_EQ(list.vms_size(), 1);
    EXPECT_EQ(list.vms(0).config().backend(), hvstack::v1::BACKEND_LIBVIRT);
    EXPECT_EQ(list.vms(0).state(), VM_STATE_RUNNING);
  }
  {
    grpc::ClientContext context;
    hvstack::v1::ListVmStatsResponse stats;
    ASSERT_TRUE(
        stub_->ListVmStats(&context, hvstack::v1::ListVmStatsRequest(), &stats)
            .ok());
    ASSERT_EQ(stats.stats_size(), 1);
    EXPECT_EQ(stats.stats(0).name(), vm);
    EXPECT_GT(stats.stats(0).worker_cpu_time_ns(), 0u);
    EXPECT_EQ(stats.stats(0).guest_memory_bytes(), 320u << 20);
  }
  absl::StatusOr<CommandResult> shown = vmms_->Vmctl({"show", vm});
  ASSERT_TRUE(shown.ok());
  EXPECT_THAT(shown->out, HasSubstr("backend: libvirt (tcg)"));
  EXPECT_THAT(shown->out, HasSubstr("libvirt_domain: hvstack-io"));
  EXPECT_THAT(shown->out, HasSubstr("libvirt_connected: yes"));
  absl::StatusOr<CommandResult> host = vmms_->Vmctl({"hostinfo"});
  ASSERT_TRUE(host.ok());
  EXPECT_THAT(host->out, HasSubstr("libvirt_connected: yes"));

  // Restart policy on-failure: QEMU killed -> Crashed -> started again.
  const int64_t qemu = Get(vm).worker_pid();
  ASSERT_GT(qemu, 0);
  ASSERT_EQ(kill(static_cast<pid_t>(qemu), SIGKILL), 0);
  for (absl::Time end = absl::Now() + absl::Seconds(60);
       absl::Now() < end &&
       !(Get(vm).state() == VM_STATE_RUNNING && Get(vm).restart_count() == 1);
       absl::SleepFor(absl::Milliseconds(100))) {
  }
  {
    const hvstack::v1::Vm restarted = Get(vm);
    EXPECT_EQ(restarted.state(), VM_STATE_RUNNING)
        << Describe(Events(vm)) << "\n"
        << vmms_->Log();
    EXPECT_EQ(restarted.restart_count(), 1u);
    EXPECT_NE(restarted.worker_pid(), qemu);
    const std::vector<VmEvent> events = Events(vm);
    EXPECT_TRUE(std::any_of(events.begin(), events.end(), [](auto& e) {
      return e.state() == VM_STATE_CRASHED;
    })) << Describe(events);
  }
  ASSERT_TRUE(AwaitConsole(vm, "READY-FOR-INPUT", 2)) << Console(vm);

  // The guest ignores the power button: ShutdownVm falls back to a hard
  // power-off after its timeout.
  {
    hvstack::v1::ShutdownVmRequest request;
    request.set_name(vm);
    request.mutable_timeout()->set_seconds(2);
    request.set_fallback(hvstack::v1::ShutdownVmRequest::FALLBACK_FORCE_OFF);
    grpc::ClientContext context;
    hvstack::v1::Vm off;
    s = stub_->ShutdownVm(&context, request, &off);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(off.state(), VM_STATE_OFF) << off.state_reason();
    std::printf("ShutdownVm fallback recorded: \"%s\"\n",
                off.state_reason().c_str());
  }
  // vmms's end stops it; autostart starts it with the next vmms.
  ASSERT_TRUE(Call(&VmService::Stub::StartVm, vm).ok());
  {
    const absl::Status terminated = vmms_->Terminate();
    const std::string log = vmms_->Log();
    ASSERT_TRUE(terminated.ok())
        << terminated << "\n"
        << log.substr(log.size() > 6000 ? log.size() - 6000 : 0);
  }
  StartVmms();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_TRUE(AwaitState(vm, VM_STATE_RUNNING))
      << Get(vm).state_reason() << "\n"
      << vmms_->Log();
  ASSERT_TRUE(Call(&VmService::Stub::StopVm, vm).ok());
}

}  // namespace
}  // namespace hvtest
