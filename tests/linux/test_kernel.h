#ifndef HVSTACK_TESTS_LINUX_TEST_KERNEL_H_
#define HVSTACK_TESTS_LINUX_TEST_KERNEL_H_

// Booting hvstack's Linux test kernel (tests/linux/build_test_kernel.sh) in
// tests, through the real vmctl -> vmms -> vmwp path:
//
//   ASSERT_OK(hvtest::MakeInitramfs(dir + "/initrd", "MY-MARKER"));
//   auto vm = hvtest::LinuxVm::Boot({.name = "l1", .initrd = dir + "/initrd"});
//   absl::StatusOr<absl::Duration> t = (*vm)->WaitForConsole("MY-MARKER");
//
// Every wait is bounded; the destructor stops the VM, vmms and any worker of
// its state directory. Link //tests/linux:test_kernel (it brings the
// scripts, the config fragment and the system binaries as runfiles); tests
// that may build the kernel (a fresh machine) must be size "enormous".

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "tests/harness/process.h"
#include "tests/harness/vmms_instance.h"

namespace hvtest {

// The cached test kernel's vmlinux (PVH entry). The first call on a machine
// builds it (about 16 min on 2 cores; concurrent callers wait for one build);
// later calls return at once. Fails with the script's own message (missing
// package, build error) or DeadlineExceeded after `timeout`.
absl::StatusOr<std::string> TestKernelPath(
    absl::Duration timeout = absl::Minutes(50));

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

// The command line every test-kernel boot starts with: serial console, no
// XSAVE (this host's KVM cannot run xsave/xrstor), and the boot-speed options
// measured in tests/linux/README.md.
std::string TestKernelBaseCmdline();

struct LinuxVmOptions {
  std::string name = "linux";
  // Empty: TestKernelPath().
  std::string kernel;
  // Empty: no initramfs (the kernel then panics after its drivers are up).
  std::string initrd;
  // Appended to TestKernelBaseCmdline().
  std::string extra_cmdline;
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

  // The console so far, and its lines that contain any of `needles`.
  std::string Console() const;
  std::string ConsoleLines(const std::vector<std::string>& needles) const;
  // `vmctl --json show NAME`; null json if vmctl failed.
  nlohmann::json Show();
  // `vmctl ARGS...` against this VM's vmms.
  absl::StatusOr<CommandResult> Vmctl(
      const std::vector<std::string>& args,
      absl::Duration timeout = absl::Seconds(60));
  // vmms's log, which holds its workers' logs too (vmwp inherits its stderr).
  std::string ServiceLog() const;

  // Time since StartVm.
  absl::Duration Elapsed() const;
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
  // Reads more of the console file; true if the VM's console stream ended.
  bool ConsoleStreamEnded();
  void KillWorkersOfStateDir();

  LinuxVmOptions options_;
  std::string cmdline_;
  TempDir dir_;
  std::unique_ptr<VmmsInstance> vmms_;
  ChildProcess console_follower_;
  std::string console_path_;
  absl::Time started_ = absl::InfinitePast();
  std::vector<std::pair<std::string, absl::Duration>> marks_;
};

}  // namespace hvtest

#endif  // HVSTACK_TESTS_LINUX_TEST_KERNEL_H_
