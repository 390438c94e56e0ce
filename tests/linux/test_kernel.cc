#include "tests/linux/test_kernel.h"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "tests/kvmbox/kvmbox.h"

namespace hvtest {
namespace {

// How often waits look at the console and at `vmctl show`.
constexpr absl::Duration kConsolePoll = absl::Milliseconds(20);
constexpr absl::Duration kShowPoll = absl::Milliseconds(200);

std::string LastLines(const std::string& text, size_t n) {
  std::vector<absl::string_view> lines =
      absl::StrSplit(text, '\n', absl::SkipEmpty());
  const size_t first = lines.size() > n ? lines.size() - n : 0;
  std::string out;
  for (size_t i = first; i < lines.size(); ++i) {
    absl::StrAppend(&out, "  | ", lines[i], "\n");
  }
  return out;
}

// What a failure report shows of a guest's console: the last lines, and when
// the kernel reported a fault, the lines from its first report on (a panic's
// cause scrolls out of the last lines behind its stack dump).
std::string ConsoleExcerpt(const std::string& console, size_t n) {
  static const std::regex kFirstReport(
      R"(BUG: |Oops|general protection fault|WARNING: |Kernel panic|double fault)");
  std::smatch m;
  if (!std::regex_search(console, m, kFirstReport))
    return LastLines(console, n);
  size_t from = console.rfind('\n', m.position(0));
  from = from == std::string::npos ? 0 : from + 1;
  std::vector<absl::string_view> report = absl::StrSplit(
      absl::string_view(console).substr(from), '\n', absl::SkipEmpty());
  std::string out = "  first fault report:\n";
  for (size_t i = 0; i < report.size() && i < 40; ++i) {
    absl::StrAppend(&out, "  | ", report[i], "\n");
  }
  absl::StrAppend(&out, "  last lines:\n", LastLines(console, n));
  return out;
}

std::string ScriptError(const std::string& what,
                        const absl::StatusOr<CommandResult>& r) {
  if (!r.ok()) return absl::StrCat(what, ": ", r.status().message());
  return absl::StrCat(
      what, " exited with ", r->exit_code,
      r->signal ? absl::StrCat(" (signal ", r->signal, ")") : std::string(),
      ":\n", LastLines(r->err, 40));
}

// The kernel's way of saying it stopped for good: no point waiting on.
// A fault the kernel cannot survive; a double fault can wedge the guest
// before it prints its panic line.
bool FatalFault(const std::string& console) {
  return absl::StrContains(console, "PANIC: double fault") ||
         absl::StrContains(console, "Fatal exception");
}

// A kernel that panicked, or took such a fault.
bool Panicked(const std::string& console) {
  return absl::StrContains(console, "Kernel panic - not syncing") ||
         FatalFault(console);
}

}  // namespace

absl::StatusOr<std::string> TestKernelPath(absl::Duration timeout) {
  static std::string* cached = nullptr;
  if (cached != nullptr) return *cached;
  // A kernel built by hand (experiments with another config).
  if (const char* own = std::getenv("HVSTACK_TEST_KERNEL");
      own != nullptr && *own != '\0') {
    if (access(own, R_OK) != 0) {
      return absl::NotFoundError(
          absl::StrCat("HVSTACK_TEST_KERNEL=", own, " is not readable"));
    }
    cached = new std::string(own);
    return *cached;
  }
  const std::string script = Runfile("tests/linux/build_test_kernel.sh");
  std::vector<std::string> argv;
  if (kvmbox::InsideKvmbox()) {
    // Compiling under kvmbox's emulated CPU would take hours: the host
    // builds it (linux_test_main does, before it enters kvmbox).
    argv = {script, "--cached-only"};
  } else {
    // coreutils' timeout runs the script in a process group of its own and
    // stops all of it (make and the compilers too) when the time is up.
    argv = {"/usr/bin/timeout", "--kill-after=20",
            absl::StrCat(absl::ToInt64Seconds(timeout)), script};
  }
  absl::StatusOr<CommandResult> r =
      RunCommand(argv, {}, timeout + absl::Seconds(40));
  if (!r.ok() || r->exit_code != 0) {
    if (r.ok() && r->exit_code == 124) {
      return absl::DeadlineExceededError(absl::StrCat(
          "building the test kernel took more than ",
          absl::FormatDuration(timeout), ":\n", LastLines(r->err, 20)));
    }
    return absl::FailedPreconditionError(
        ScriptError("tests/linux/build_test_kernel.sh", r));
  }
  std::string path(absl::StripAsciiWhitespace(r->out));
  if (path.find('\n') != std::string::npos) {
    path = std::string(
        absl::StripAsciiWhitespace(path.substr(path.find_last_of('\n') + 1)));
  }
  if (access(path.c_str(), R_OK) != 0) {
    return absl::InternalError(absl::StrCat("build_test_kernel.sh printed '",
                                            path, "', which is not readable"));
  }
  if (!r->err.empty()) std::fprintf(stderr, "%s", r->err.c_str());
  cached = new std::string(path);
  return path;
}

absl::StatusOr<std::string> TestKernelConfig() {
  absl::StatusOr<std::string> kernel = TestKernelPath();
  if (!kernel.ok()) return kernel.status();
  const std::string config =
      ReadFileOrEmpty(kernel->substr(0, kernel->find_last_of('/')) + "/config");
  if (config.empty()) {
    return absl::NotFoundError(absl::StrCat("no config next to ", *kernel));
  }
  return config;
}

absl::Status MakeInitramfs(const std::string& out, const std::string& marker,
                           const InitramfsOptions& options) {
  std::vector<std::string> argv = {Runfile("tests/linux/make_initramfs.sh")};
  if (options.uncompressed) argv.push_back("--uncompressed");
  if (options.no_busybox) argv.push_back("--no-busybox");
  if (!options.busybox.empty()) {
    argv.push_back("--busybox");
    argv.push_back(options.busybox);
  }
  if (!options.init.empty()) {
    argv.push_back("--init");
    argv.push_back(options.init);
  }
  if (options.kernel_log && !options.no_busybox && options.init.empty()) {
    argv.push_back("--run");
    argv.push_back("cat /proc/kmsg &");
  }
  for (const std::string& line : options.run) {
    argv.push_back("--run");
    argv.push_back(line);
  }
  for (const auto& [src, dest] : options.files) {
    argv.push_back("--file");
    argv.push_back(absl::StrCat(src, ":", dest));
  }
  for (const auto& [src, dest] : options.binaries) {
    argv.push_back("--binary");
    argv.push_back(dest.empty() ? src : absl::StrCat(src, ":", dest));
  }
  argv.push_back(out);
  argv.push_back(marker);
  absl::StatusOr<CommandResult> r = RunCommand(argv, {}, absl::Minutes(2));
  if (!r.ok() || r->exit_code != 0) {
    return absl::InternalError(ScriptError("make_initramfs.sh", r));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> FetchPackageFiles(
    const std::string& package, const std::string& out_dir,
    const std::vector<std::string>& paths) {
  std::vector<std::string> argv = {Runfile("tests/linux/fetch_package.sh"),
                                   package, out_dir};
  argv.insert(argv.end(), paths.begin(), paths.end());
  absl::StatusOr<CommandResult> r = RunCommand(argv, {}, absl::Minutes(5));
  if (!r.ok() || r->exit_code != 0) {
    return absl::FailedPreconditionError(
        ScriptError(absl::StrCat("fetch_package.sh ", package), r));
  }
  std::vector<std::string> local;
  for (const std::string& path : paths) {
    local.push_back(
        absl::StrCat(out_dir, "/", path.substr(path.find_last_of('/') + 1)));
  }
  return local;
}

bool HostRunsGuestUserspace() { return NoGuestUserspaceReason().empty(); }

std::string NoGuestUserspaceReason() {
  if (access("/sys/module/kvm_pvm", F_OK) == 0) {
    return "this host's KVM is kvm_pvm, where a system call from guest user "
           "mode never reaches the guest kernel (init faults at "
           "entry_SYSCALL_64): no guest userspace";
  }
  return "";
}

namespace {

std::vector<std::pair<std::string, HostStep>>& HostSteps() {
  static auto* steps = new std::vector<std::pair<std::string, HostStep>>();
  return *steps;
}

constexpr char kPreparedEnv[] = "HVSTACK_LINUX_PREPARED";

}  // namespace

bool PrepareOnHost(const std::string& name, HostStep step) {
  HostSteps().emplace_back(name, std::move(step));
  return true;
}

absl::StatusOr<std::string> PreparedOnHost(const std::string& name) {
  const char* dir = std::getenv(kPreparedEnv);
  if (dir == nullptr || *dir == '\0') {
    return absl::FailedPreconditionError(absl::StrCat(
        "'", name, "' was not prepared on the host: $", kPreparedEnv,
        " is not set (link //tests/linux:linux_test_main as the test's main)"));
  }
  const std::string error =
      ReadFileOrEmpty(absl::StrCat(dir, "/", name, ".error"));
  if (!error.empty()) {
    return absl::InternalError(
        absl::StrCat("preparing '", name, "' on the host failed: ", error));
  }
  if (access(absl::StrCat(dir, "/", name, ".done").c_str(), F_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat("no step '", name, "' ran on the host (PrepareOnHost)"));
  }
  return std::string(dir);
}

void PrepareLinuxTestsOnHost() {
  if (kvmbox::InsideKvmbox()) return;
  const absl::Time start = absl::Now();
  absl::StatusOr<std::string> kernel = TestKernelPath();
  if (kernel.ok()) {
    std::fprintf(stderr, "test kernel: %s\n", kernel->c_str());
    setenv("HVSTACK_TEST_KERNEL", kernel->c_str(), 0);
  } else {
    // The tests (inside kvmbox too) fail with the same message.
    std::fprintf(stderr, "test kernel: %s\n",
                 std::string(kernel.status().message()).c_str());
  }
  if (HostSteps().empty()) return;
  std::string dir;
  if (const char* tmp = std::getenv("TEST_TMPDIR"); tmp != nullptr && *tmp) {
    dir = absl::StrCat(tmp, "/linux-prepared");
  } else {
    char tmpl[] = "/tmp/hvt-linux-prepared-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return;
    dir = tmpl;
  }
  std::filesystem::create_directories(dir);
  for (const auto& [name, step] : HostSteps()) {
    const absl::Time t = absl::Now();
    absl::Status s = step(dir);
    std::fprintf(stderr, "prepared on the host: %s in %.1f s%s%s\n",
                 name.c_str(), absl::ToDoubleSeconds(absl::Now() - t),
                 s.ok() ? "" : ": ", s.ok() ? "" : s.ToString().c_str());
    std::ofstream(absl::StrCat(dir, "/", name, s.ok() ? ".done" : ".error"))
        << (s.ok() ? "" : s.ToString());
  }
  setenv(kPreparedEnv, dir.c_str(), 1);
  std::fprintf(stderr, "host preparation: %.1f s\n",
               absl::ToDoubleSeconds(absl::Now() - start));
}

std::string SpinInitPath() { return Runfile("tests/linux/init/spin_init"); }

std::string TestKernelBaseCmdline() { return "console=ttyS0 noxsave"; }

std::optional<double> GuestSeconds(absl::string_view line) {
  const size_t open = line.find('[');
  const size_t close = line.find(']');
  if (open == absl::string_view::npos || close == absl::string_view::npos ||
      close < open || open > 4) {
    return std::nullopt;
  }
  double seconds = 0;
  if (!absl::SimpleAtod(
          absl::StripAsciiWhitespace(line.substr(open + 1, close - open - 1)),
          &seconds)) {
    return std::nullopt;
  }
  return seconds;
}

LinuxVm::LinuxVm(LinuxVmOptions options) : options_(std::move(options)) {
  cmdline_ = TestKernelBaseCmdline();
  if (options_.quiet && HostRunsGuestUserspace()) {
    absl::StrAppend(&cmdline_, " quiet");
  }
  if (!options_.extra_cmdline.empty()) {
    absl::StrAppend(&cmdline_, " ", options_.extra_cmdline);
  }
  console_path_ = dir_.path() + "/console.out";
}

absl::StatusOr<std::unique_ptr<LinuxVm>> LinuxVm::Boot(LinuxVmOptions options) {
  if (access("/dev/kvm", R_OK | W_OK) != 0) {
    return absl::FailedPreconditionError(
        "needs read/write access to /dev/kvm, which this host lacks");
  }
  if (options.kernel.empty()) {
    absl::StatusOr<std::string> kernel = TestKernelPath();
    if (!kernel.ok()) return kernel.status();
    options.kernel = *kernel;
  }
  std::unique_ptr<LinuxVm> vm(new LinuxVm(std::move(options)));
  absl::Status started = vm->Start();
  if (!started.ok()) return started;
  return vm;
}

absl::Status LinuxVm::Start() {
  vmms_ = std::make_unique<VmmsInstance>(dir_.path(), options_.vmms_args);
  absl::Status s = vmms_->Start();
  if (!s.ok()) return s;
  std::vector<std::string> create = {
      "create",    options_.name,
      "--kernel",  options_.kernel,
      "--memory",  absl::StrCat(options_.memory_mib),
      "--cpus",    absl::StrCat(options_.cpus),
      "--cmdline", cmdline_};
  if (!options_.initrd.empty()) {
    create.push_back("--initrd");
    create.push_back(options_.initrd);
  }
  create.insert(create.end(), options_.create_args.begin(),
                options_.create_args.end());
  absl::StatusOr<CommandResult> r = Vmctl(create);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::InternalError(absl::StrCat("vmctl create: ", r->err));
  }
  // StartVm through the API (what `vmctl start` calls), without a vmctl
  // process to start: seconds inside kvmbox.
  started_ = absl::Now();
  hvstack::v1::StartVmRequest start;
  start.set_name(options_.name);
  hvstack::v1::Vm started;
  const grpc::Status st =
      Api().StartVm(Context(absl::Minutes(1)).get(), start, &started);
  if (!st.ok()) {
    return absl::InternalError(absl::StrCat("StartVm: ", st.error_message(),
                                            "\n", LastLines(vmms_->Log(), 20)));
  }
  running_at_ = Elapsed();
  FollowConsole();
  return absl::OkStatus();
}

void LinuxVm::FollowConsole() {
  console_ended_ = false;
  // The public console stream (StreamConsole with follow: what `vmctl
  // console` shows), copied to console_path_ by a thread of ours rather than
  // a vmctl process. It holds everything since the start and ends when the VM
  // stops.
  console_context_ = std::make_unique<grpc::ClientContext>();
  console_thread_ = std::thread([this] {
    hvstack::v1::StreamConsoleRequest request;
    request.set_name(options_.name);
    request.set_follow(true);
    std::unique_ptr<grpc::ClientReader<hvstack::v1::ConsoleChunk>> reader =
        Api().StreamConsole(console_context_.get(), request);
    std::FILE* out = std::fopen(console_path_.c_str(), "a");
    hvstack::v1::ConsoleChunk chunk;
    while (reader->Read(&chunk)) {
      if (out != nullptr) {
        std::fwrite(chunk.data().data(), 1, chunk.data().size(), out);
        std::fflush(out);
      }
    }
    const grpc::Status status = reader->Finish();
    if (out != nullptr) std::fclose(out);
    if (!status.ok()) {
      std::ofstream(dir_.path() + "/console.err") << status.error_message();
    }
    console_ended_ = true;
  });
}

absl::Status LinuxVm::FollowConsoleAgain(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!console_ended_) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          "the console stream of the previous worker did not end");
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  if (console_thread_.joinable()) console_thread_.join();
  FollowConsole();
  return absl::OkStatus();
}

LinuxVm::~LinuxVm() {
  if (vmms_ != nullptr) {
    nlohmann::json vm = Show();
    const std::string state = vm.is_object() ? vm.value("state", "") : "";
    if (state != "" && state != "VM_STATE_OFF" && state != "VM_STATE_CRASHED") {
      (void)Vmctl({"stop", options_.name}, absl::Seconds(30));
    }
    // Without --keep-workers-on-exit, SIGTERM makes vmms stop its workers.
    (void)vmms_->Terminate();
  }
  KillWorkersOfStateDir();
  if (console_thread_.joinable()) {
    console_context_->TryCancel();
    console_thread_.join();
  }
}

void LinuxVm::KillWorkersOfStateDir() {
  // Workers run in sessions of their own and outlive a vmms that died: find
  // them by the config path under our state directory.
  const std::string needle = absl::StrCat("--config=", dir_.path(), "/");
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return;
  while (dirent* entry = readdir(proc)) {
    const pid_t pid = atoi(entry->d_name);
    if (pid <= 0) continue;
    std::string cmdline =
        ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/cmdline"));
    for (char& c : cmdline) {
      if (c == '\0') c = ' ';
    }
    if (absl::StrContains(cmdline, needle)) {
      std::fprintf(stderr, "LinuxVm: killing leftover worker %d (%s)\n", pid,
                   cmdline.c_str());
      ::kill(pid, SIGKILL);
    }
  }
  closedir(proc);
}

bool LinuxVm::ConsoleStreamEnded() { return console_ended_; }

std::string LinuxVm::Console() const { return ReadFileOrEmpty(console_path_); }

std::string LinuxVm::ConsoleLines(
    const std::vector<std::string>& needles) const {
  std::string out;
  for (absl::string_view line : absl::StrSplit(Console(), '\n')) {
    for (const std::string& needle : needles) {
      if (absl::StrContains(line, needle)) {
        absl::StrAppend(&out, absl::StripTrailingAsciiWhitespace(line), "\n");
        break;
      }
    }
  }
  return out;
}

absl::StatusOr<absl::Duration> LinuxVm::WaitForConsoleRegex(
    const std::string& regex, absl::Duration timeout, std::string* match) {
  const std::regex re(regex);
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    // Whether the stream had ended is read before the console, so a VM that
    // printed its last line and stopped is judged on that last line.
    const bool ended = ConsoleStreamEnded();
    const std::string console = Console();
    const absl::Duration seen = Elapsed();
    // Whole lines only: the last one may still be arriving (unless the
    // stream ended).
    const absl::string_view complete =
        ended ? absl::string_view(console)
              : absl::string_view(console).substr(
                    0, console.find_last_of('\n') == std::string::npos
                           ? 0
                           : console.find_last_of('\n') + 1);
    for (absl::string_view line : absl::StrSplit(complete, '\n')) {
      const std::string owned(absl::StripTrailingAsciiWhitespace(line));
      if (std::regex_search(owned, re)) {
        if (match != nullptr) *match = owned;
        return seen;
      }
    }
    if (ended) {
      const nlohmann::json vm = Show();
      return absl::FailedPreconditionError(
          absl::StrCat("VM '", options_.name, "' stopped (",
                       vm.is_object() ? vm.value("state", "?") : "?", ": ",
                       vm.is_object() ? vm.value("stateReason", "") : "",
                       ") without printing /", regex, "/; its console:\n",
                       ConsoleExcerpt(console, 15)));
    }
    if (Panicked(console) && !absl::StrContains(regex, "panic")) {
      return absl::AbortedError(
          absl::StrCat("the guest kernel panicked before printing /", regex,
                       "/; its console:\n", ConsoleExcerpt(console, 25)));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "no /", regex, "/ on the console of VM '", options_.name, "' within ",
          absl::FormatDuration(timeout), " (", absl::FormatDuration(Elapsed()),
          " since StartVm); its console:\n", ConsoleExcerpt(console, 15)));
    }
    absl::SleepFor(kConsolePoll);
  }
}

absl::StatusOr<absl::Duration> LinuxVm::WaitForConsole(absl::string_view text,
                                                       absl::Duration timeout) {
  // A regex of the literal text.
  static const std::regex kSpecial(R"([.^$|()\[\]{}*+?\\])");
  const std::string regex =
      std::regex_replace(std::string(text), kSpecial, R"(\$&)");
  return WaitForConsoleRegex(regex, timeout);
}

absl::StatusOr<absl::Duration> LinuxVm::WaitForShow(
    const std::function<bool(const nlohmann::json&)>& done,
    absl::string_view what, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  nlohmann::json vm;
  for (;;) {
    vm = Show();
    const absl::Duration seen = Elapsed();
    if (vm.is_object() && done(vm)) return seen;
    // Not on a panic: tests of guest crashes wait here for its outcome.
    if (const std::string console = Console(); FatalFault(console)) {
      return absl::AbortedError(
          absl::StrCat("VM '", options_.name,
                       "': the guest kernel took a fatal fault before ", what,
                       "; its console:\n", ConsoleExcerpt(console, 10)));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "VM '", options_.name, "': no ", what, " within ",
          absl::FormatDuration(timeout), "; last `vmctl show`: ", vm.dump(),
          "\nlast console lines:\n", ConsoleExcerpt(Console(), 10)));
    }
    absl::SleepFor(kShowPoll);
  }
}

absl::StatusOr<absl::Duration> LinuxVm::WaitForState(const std::string& state,
                                                     absl::Duration timeout) {
  return WaitForShow(
      [&](const nlohmann::json& vm) { return vm.value("state", "") == state; },
      state, timeout);
}

hvstack::v1::VmService::Stub& LinuxVm::Api() {
  if (api_ == nullptr) {
    api_ = hvstack::v1::VmService::NewStub(grpc::CreateChannel(
        "unix:" + vmms_->socket_path(), grpc::InsecureChannelCredentials()));
  }
  return *api_;
}

std::unique_ptr<grpc::ClientContext> LinuxVm::Context(absl::Duration deadline) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(
      absl::ToChronoTime(absl::Now() + kvmbox::Scaled(deadline)));
  return context;
}

nlohmann::json LinuxVm::Show() {
  // GetVm through the API, printed as `vmctl --json show` prints it: the
  // waits poll this several times a second, and a vmctl process per poll
  // costs seconds inside kvmbox (emulated CPU).
  std::unique_ptr<grpc::ClientContext> context = Context();
  hvstack::v1::GetVmRequest request;
  request.set_name(options_.name);
  hvstack::v1::Vm vm;
  if (!Api().GetVm(context.get(), request, &vm).ok()) return nlohmann::json();
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(vm, &json).ok()) {
    return nlohmann::json();
  }
  return nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
}

absl::StatusOr<CommandResult> LinuxVm::Vmctl(
    const std::vector<std::string>& args, absl::Duration timeout) {
  return vmms_->Vmctl(args, timeout);
}

std::string LinuxVm::ServiceLog() const { return vmms_->Log(); }

absl::Duration LinuxVm::Elapsed() const { return absl::Now() - started_; }

absl::Duration LinuxVm::LineTime(absl::string_view line,
                                 absl::Duration seen) const {
  std::optional<double> guest = GuestSeconds(line);
  return guest.has_value() ? running_at_ + absl::Seconds(*guest) : seen;
}

void LinuxVm::Mark(const std::string& what, absl::Duration at) {
  marks_.emplace_back(what, at);
  std::fprintf(stderr, "[%s] %-40s %7.1f s after StartVm\n",
               options_.name.c_str(), what.c_str(), absl::ToDoubleSeconds(at));
}

std::string LinuxVm::Timeline() const {
  std::string out;
  for (const auto& [what, at] : marks_) {
    absl::StrAppendFormat(&out, "%s: %-40s %7.1f s\n", options_.name, what,
                          absl::ToDoubleSeconds(at));
  }
  return out;
}

}  // namespace hvtest
