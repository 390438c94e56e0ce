#ifndef HVSTACK_TESTS_LINUX_TEST_KERNEL_H_
#define HVSTACK_TESTS_LINUX_TEST_KERNEL_H_

// Booting hvstack's Linux test kernel (tests/linux/build_test_kernel.sh) in
// tests, through the real vmctl -> vmms -> vmwp path. Tests link
// //tests/linux:linux_test_main (their main: builds the kernel on the host,
// then runs the test inside kvmbox where there is no /dev/kvm):
//
//   ASSERT_OK(hvtest::MakeInitramfs(dir + "/initrd", "MY-MARKER"));
//   auto vm = hvtest::LinuxVm::Boot({.name = "l1", .initrd = dir + "/initrd"});
//   absl::StatusOr<absl::Duration> t = (*vm)->WaitForConsole("MY-MARKER");
//
// Every wait is bounded; the destructor stops the VM, vmms and any worker of
// its state directory. Link //tests/linux:test_kernel (it brings the
// scripts, the config fragment and the system binaries as runfiles); tests
// that may build the kernel (a fresh machine) must be size "enormous".

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "tests/harness/process.h"
#include "tests/harness/vmms_instance.h"

namespace hvtest {

// The cached test kernel's vmlinux (PVH entry), or $HVSTACK_TEST_KERNEL if set
// (a kernel built by hand). The first call on a machine
// builds it (about 16 min on 2 cores; concurrent callers wait for one build);
// later calls return at once. Fails with the script's own message (missing
// package, build error) or DeadlineExceeded after `timeout`.
absl::StatusOr<std::string> TestKernelPath(
    absl::Duration timeout = absl::Minutes(50));

// Work a test needs done on the host, before it runs inside kvmbox (whose CPU
// is emulated: a script that takes a second here takes minutes there, and
// there is no network): making initramfs archives and disk images, fetching
// packages. A step writes files under `dir`, which has the same path inside
// kvmbox. Register steps at static initialization:
//
//   const bool kInitrd = hvtest::PrepareOnHost("initrd", [](const std::string&
//   dir) {
//     return hvtest::MakeInitramfs(dir + "/initrd.cpio", "MARKER", {...});
//   });
//
// and read the result in the test with PreparedOnHost("initrd").
using HostStep = std::function<absl::Status(const std::string& dir)>;
bool PrepareOnHost(const std::string& name, HostStep step);
// The directory step `name` wrote to, or the error it returned (or why it
// did not run).
absl::StatusOr<std::string> PreparedOnHost(const std::string& name);

// What //tests/linux:linux_test_main does before the tests run (before it
// enters kvmbox where there is no /dev/kvm): builds (or finds) the cached test
// kernel and exports it as $HVSTACK_TEST_KERNEL, then runs every PrepareOnHost
// step into a new directory exported as $HVSTACK_LINUX_PREPARED (kvmbox passes
// the environment on). Each step's time is printed; failures are recorded for
// the tests to report.
void PrepareLinuxTestsOnHost();

// The test kernel's full .config, next to its vmlinux.
absl::StatusOr<std::string> TestKernelConfig();

// What the initramfs holds; see tests/linux/make_initramfs.sh for details.
struct InitramfsOptions {
  // Plain cpio: the test kernel has no decompressor.
  bool uncompressed = true;
  // A static busybox other than /bin/busybox (e.g. an i386 one); with
  // `no_busybox`, none at all.
  std::string busybox;
  bool no_busybox = false;
  // A file to use as /init instead of the generated busybox script.
  std::string init;
  // The generated /init first runs `cat /proc/kmsg &`: the kernel's whole
  // log so far and everything it logs later go to the console through the
  // tty. Lines keep their "<level>[seconds]" prefix. Costly where console
  // bytes are (kvmbox): prefer printing only the lines a test asserts on
  // (`dmesg | grep -E ...` in `run`).
  bool kernel_log = false;
  // Shell lines the generated /init runs before it prints the marker.
  std::vector<std::string> run;
  // Host file -> path in the archive (relative), mode kept.
  std::vector<std::pair<std::string, std::string>> files;
  // Dynamically linked programs -> path in the archive (empty: bin/<name>),
  // with every library `ldd` names (the guest then needs no other libc).
  std::vector<std::pair<std::string, std::string>> binaries;
};

// Copies `paths` (as inside the package, e.g. "usr/sbin/hv_kvp_daemon") out
// of Debian's `package` into `out_dir` (flat), fetching it with apt-get
// download on first use (cached; never installed). Returns the local paths.
absl::StatusOr<std::vector<std::string>> FetchPackageFiles(
    const std::string& package, const std::string& out_dir,
    const std::vector<std::string>& paths);

// Runs make_initramfs.sh: writes `out`, whose generated /init prints `marker`
// on a line of its own and powers off.
absl::Status MakeInitramfs(const std::string& out, const std::string& marker,
                           const InitramfsOptions& options = {});

// Whether guest user mode can make system calls on this host: not where KVM
// is kvm_pvm (a 64-bit `syscall` from guest user mode never reaches the guest
// kernel; see tests/linux/README.md, "Userspace"). Anywhere else a busybox
// /init works.
bool HostRunsGuestUserspace();
// Why not, for skip messages; empty where it can.
std::string NoGuestUserspaceReason();
// An /init for hosts without guest userspace: makes no system call and never
// exits, so Linux stays up (its drivers keep answering the host). Burns the
// vCPU while it runs. Use with InitramfsOptions{.no_busybox = true, .init =
// SpinInitPath()}.
std::string SpinInitPath();

// The command line every test-kernel boot starts with: serial console and no
// XSAVE (kvm_pvm hosts cannot run xsave/xrstor). LinuxVmOptions::quiet adds
// `quiet`.
std::string TestKernelBaseCmdline();

// The boot timestamp of a kernel log line ("[  180.370144] hv_vmbus: ..." or
// "<6>[  180.370144] ..."), in seconds of the guest's clock since its kernel
// started; nullopt if it has none.
std::optional<double> GuestSeconds(absl::string_view line);

struct LinuxVmOptions {
  std::string name = "linux";
  // Empty: TestKernelPath().
  std::string kernel;
  // Empty: no initramfs (the kernel then panics after its drivers are up).
  std::string initrd;
  // Appended to TestKernelBaseCmdline().
  std::string extra_cmdline;
  // `quiet` where the guest has a userspace: the kernel's console writes cost
  // two port-I/O exits per byte (the 8250 console polls LSR for every
  // character), which dominated the boot in nested KVM (~40 ms a byte at load
  // 20). Only warnings and errors then reach the console: /init prints the
  // lines a test waits for (`dmesg | grep -E ...` in InitramfsOptions::run;
  // LineTime() gives when the kernel logged them). Set false to see the
  // whole boot log.
  bool quiet = true;
  int cpus = 1;
  int memory_mib = 256;
  // More `vmctl create` arguments (disks, NICs, ...).
  std::vector<std::string> create_args;
  // Extra vmms arguments.
  std::vector<std::string> vmms_args;
};

// One test-kernel VM on its own vmms. Not thread-safe.
class LinuxVm {
 public:
  // Starts vmms on a fresh state directory, `vmctl create`s the VM, `vmctl
  // start`s it (StartVm: the reference for every time below) and follows its
  // console with `vmctl console`.
  static absl::StatusOr<std::unique_ptr<LinuxVm>> Boot(LinuxVmOptions options);
  // Stops the VM if it still runs, then vmms (which stops its workers), then
  // SIGKILLs any worker of this state directory that is left.
  ~LinuxVm();
  LinuxVm(const LinuxVm&) = delete;
  LinuxVm& operator=(const LinuxVm&) = delete;

  // Waits until the console holds `text` (anywhere in a line); returns the
  // time from StartVm to the moment the test saw it. DeadlineExceeded (with
  // the console's last lines) after `timeout`; FailedPrecondition at once if
  // the VM stopped without printing it.
  absl::StatusOr<absl::Duration> WaitForConsole(
      absl::string_view text, absl::Duration timeout = absl::Minutes(3));
  // The same for a regular expression (ECMAScript); `match` gets the line.
  absl::StatusOr<absl::Duration> WaitForConsoleRegex(
      const std::string& regex, absl::Duration timeout = absl::Minutes(3),
      std::string* match = nullptr);
  // Polls `vmctl --json show` until `done(vm)`; returns the time since
  // StartVm. `what` names the condition in the error.
  absl::StatusOr<absl::Duration> WaitForShow(
      const std::function<bool(const nlohmann::json&)>& done,
      absl::string_view what, absl::Duration timeout = absl::Minutes(3));
  // WaitForShow for `state` (the API's enum name, e.g. "VM_STATE_OFF").
  absl::StatusOr<absl::Duration> WaitForState(
      const std::string& state, absl::Duration timeout = absl::Minutes(1));

  // After the VM's worker ended without a successor (a save: the VM is
  // Saved) and a new one started (StartVm of the Saved VM restores it):
  // waits (up to `timeout`) for the old console stream to end, then follows
  // the new worker's console, appended to Console(). The new worker's stream
  // holds only what it printed (it continues the console log).
  absl::Status FollowConsoleAgain(absl::Duration timeout = absl::Seconds(60));

  // The console so far, and its lines that contain any of `needles`.
  std::string Console() const;
  std::string ConsoleLines(const std::vector<std::string>& needles) const;
  // What `vmctl --json show NAME` prints (from GetVm through the API: no
  // vmctl process per poll); null json if vmms did not answer.
  nlohmann::json Show();
  // vmms's API, for calls a test makes often or where a vmctl process would
  // cost seconds (inside kvmbox). Contexts from Context() (20 s deadline,
  // scaled in kvmbox).
  hvstack::v1::VmService::Stub& Api();
  static std::unique_ptr<grpc::ClientContext> Context(
      absl::Duration deadline = absl::Seconds(20));
  // `vmctl ARGS...` against this VM's vmms.
  absl::StatusOr<CommandResult> Vmctl(
      const std::vector<std::string>& args,
      absl::Duration timeout = absl::Seconds(60));
  // vmms's log, which holds its workers' logs too (vmwp inherits its stderr).
  std::string ServiceLog() const;

  // Time since StartVm.
  absl::Duration Elapsed() const;
  // When StartVm returned (the worker reported ready and its VPs start): the
  // guest kernel's clock starts about then, so a log line stamped S seconds
  // happened about RunningAt() + S after StartVm.
  absl::Duration RunningAt() const { return running_at_; }
  // The time since StartVm of a kernel log line: from its timestamp if it has
  // one (RunningAt() + S), else `seen`.
  absl::Duration LineTime(absl::string_view line, absl::Duration seen) const;
  // Records a milestone ("hv_vmbus version" at 31.2 s) for Timeline().
  void Mark(const std::string& what, absl::Duration at);
  // "name: milestone at 12.3 s" lines, in the order marked.
  std::string Timeline() const;

  const std::string& name() const { return options_.name; }
  const std::string& cmdline() const { return cmdline_; }
  VmmsInstance& vmms() { return *vmms_; }

 private:
  explicit LinuxVm(LinuxVmOptions options);
  absl::Status Start();
  // Starts the thread that appends the VM's console stream to console_path_.
  void FollowConsole();
  // Reads more of the console file; true if the VM's console stream ended.
  bool ConsoleStreamEnded();
  void KillWorkersOfStateDir();

  LinuxVmOptions options_;
  std::string cmdline_;
  TempDir dir_;
  std::unique_ptr<VmmsInstance> vmms_;
  std::unique_ptr<hvstack::v1::VmService::Stub> api_;
  std::unique_ptr<grpc::ClientContext> console_context_;
  std::thread console_thread_;
  std::atomic<bool> console_ended_{false};
  std::string console_path_;
  absl::Time started_ = absl::InfinitePast();
  absl::Duration running_at_;
  std::vector<std::pair<std::string, absl::Duration>> marks_;
};

}  // namespace hvtest

#endif  // HVSTACK_TESTS_LINUX_TEST_KERNEL_H_
