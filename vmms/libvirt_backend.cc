#include "vmms/libvirt_backend.h"

#include <dirent.h>
#include <libvirt/virterror.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "vmms/guest_crash.h"
#include "vmms/libvirt_xml.h"
#include "vmms/runtime_paths.h"
#include "vmms/state_machine.h"

namespace vmms {
namespace {

using hvstack::v1::VM_STATE_CRASHED;
using hvstack::v1::VM_STATE_OFF;
using hvstack::v1::VM_STATE_PAUSED;
using hvstack::v1::VM_STATE_RUNNING;
using hvstack::v1::VM_STATE_STARTING;
using hvstack::v1::VM_STATE_STOPPING;

constexpr size_t kMaxLibvirtMessage = 300;
// QEMU reports one guest reboot (or reset) as a burst of RESET events.
constexpr absl::Duration kRebootBurst = absl::Seconds(3);
// How long a guest crash waits for its panic line on the serial console:
// Linux prints it before it notifies the pvpanic device, but the console
// stream can deliver it a moment after libvirt's event.
constexpr absl::Duration kPanicLineWait = absl::Milliseconds(500);
// The console's tail kept as a guest crash's message (as the worker bounds
// the kernel log a guest hands over).
constexpr size_t kCrashMessageBytes = 4096;

// The last Linux panic line in `text` ("Kernel panic - not syncing: ..."),
// empty when there is none or it is not complete yet.
std::string PanicLine(absl::string_view text) {
  const size_t at = text.rfind("Kernel panic");
  if (at == absl::string_view::npos) return "";
  const size_t end = text.find('\n', at);
  if (end == absl::string_view::npos) return "";
  absl::string_view line = text.substr(at, end - at);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) {
    line.remove_suffix(1);
  }
  return std::string(line);
}

// libvirt's last error on this thread, trimmed for a user-facing message.
std::string LibvirtError() {
  const char* message = virGetLastErrorMessage();
  std::string text = message != nullptr ? message : "unknown libvirt error";
  if (text.size() > kMaxLibvirtMessage) {
    text.resize(kMaxLibvirtMessage);
    text += "...";
  }
  return text;
}

int LibvirtErrorCode() {
  virErrorPtr error = virGetLastError();
  return error != nullptr ? error->code : VIR_ERR_OK;
}

// libvirt prints every error to stderr unless told otherwise; vmms logs what
// it reports itself.
void QuietErrors(void*, virErrorPtr) {}

const char* StateText(int state) {
  switch (state) {
    case VIR_DOMAIN_RUNNING:
      return "running";
    case VIR_DOMAIN_BLOCKED:
      return "blocked";
    case VIR_DOMAIN_PAUSED:
      return "paused";
    case VIR_DOMAIN_SHUTDOWN:
      return "shutting down";
    case VIR_DOMAIN_SHUTOFF:
      return "shut off";
    case VIR_DOMAIN_CRASHED:
      return "crashed";
    case VIR_DOMAIN_PMSUSPENDED:
      return "pmsuspended";
    default:
      return "no state";
  }
}

const char* ReasonText(int state, int reason) {
  switch (state) {
    case VIR_DOMAIN_RUNNING:
      switch (reason) {
        case VIR_DOMAIN_RUNNING_BOOTED:
          return "booted";
        case VIR_DOMAIN_RUNNING_UNPAUSED:
          return "unpaused";
        case VIR_DOMAIN_RUNNING_RESTORED:
          return "restored";
        case VIR_DOMAIN_RUNNING_MIGRATED:
          return "migrated";
        case VIR_DOMAIN_RUNNING_FROM_SNAPSHOT:
          return "from snapshot";
        case VIR_DOMAIN_RUNNING_WAKEUP:
          return "wakeup";
        case VIR_DOMAIN_RUNNING_CRASHED:
          return "crashed";
        default:
          return "unknown";
      }
    case VIR_DOMAIN_PAUSED:
      switch (reason) {
        case VIR_DOMAIN_PAUSED_USER:
          return "user";
        case VIR_DOMAIN_PAUSED_IOERROR:
          return "I/O error";
        case VIR_DOMAIN_PAUSED_WATCHDOG:
          return "watchdog";
        case VIR_DOMAIN_PAUSED_CRASHED:
          return "crashed";
        case VIR_DOMAIN_PAUSED_STARTING_UP:
          return "starting up";
        case VIR_DOMAIN_PAUSED_SHUTTING_DOWN:
          return "shutting down";
        case VIR_DOMAIN_PAUSED_SAVE:
          return "save";
        case VIR_DOMAIN_PAUSED_MIGRATION:
          return "migration";
        default:
          return "unknown";
      }
    case VIR_DOMAIN_SHUTOFF:
      switch (reason) {
        case VIR_DOMAIN_SHUTOFF_SHUTDOWN:
          return "shutdown";
        case VIR_DOMAIN_SHUTOFF_DESTROYED:
          return "destroyed";
        case VIR_DOMAIN_SHUTOFF_CRASHED:
          return "crashed";
        case VIR_DOMAIN_SHUTOFF_MIGRATED:
          return "migrated";
        case VIR_DOMAIN_SHUTOFF_SAVED:
          return "saved";
        case VIR_DOMAIN_SHUTOFF_FAILED:
          return "failed";
        case VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT:
          return "from snapshot";
        case VIR_DOMAIN_SHUTOFF_DAEMON:
          return "daemon";
        default:
          return "unknown";
      }
    case VIR_DOMAIN_CRASHED:
      return reason == VIR_DOMAIN_CRASHED_PANICKED ? "panicked" : "unknown";
    default:
      return "unknown";
  }
}

std::string DescribeState(int state, int reason) {
  return absl::StrCat(StateText(state), " (", ReasonText(state, reason), ")");
}

// What vmms calls the end of a domain that shut off with `reason`.
std::string ShutoffCause(int reason) {
  switch (reason) {
    case VIR_DOMAIN_SHUTOFF_SHUTDOWN:
      return "guest powered off";
    case VIR_DOMAIN_SHUTOFF_DESTROYED:
      return "domain destroyed outside vmms";
    case VIR_DOMAIN_SHUTOFF_CRASHED:
      return "guest crashed";
    case VIR_DOMAIN_SHUTOFF_FAILED:
      return "domain failed";
    case VIR_DOMAIN_SHUTOFF_SAVED:
      return "domain saved outside vmms";
    case VIR_DOMAIN_SHUTOFF_MIGRATED:
      return "domain migrated away";
    case VIR_DOMAIN_SHUTOFF_DAEMON:
      return "domain stopped by libvirt";
    default:
      return "domain stopped";
  }
}

bool IsActive(VmState state) {
  return state != VM_STATE_OFF && state != VM_STATE_CRASHED &&
         state != hvstack::v1::VM_STATE_UNSPECIFIED;
}

bool IsLibvirt(const Vm& vm) {
  return vm.config().backend() == hvstack::v1::BACKEND_LIBVIRT;
}

// The domain's libvirt name: an adopted domain keeps its own.
std::string DomainNameOf(const Vm& vm) {
  return vm.libvirt().adopted() ? vm.libvirt().domain_name()
                                : LibvirtDomainName(vm.name());
}

std::string AdoptedRefusal(const Vm& vm, absl::string_view what) {
  return absl::StrCat(
      "VM '", vm.name(), "' is the adopted libvirt domain '", DomainNameOf(vm),
      "': its definition is libvirt's and vmms keeps it as is, so ", what,
      " is not changed here (use virsh edit ", DomainNameOf(vm),
      " while it is off; autostart and restart_policy can change here)");
}

// The embedded driver's root (qemu:///embed?root=DIR), or empty.
std::string EmbedRoot(const std::string& uri) {
  if (!absl::StartsWith(uri, "qemu:///embed")) return "";
  size_t at = uri.find("root=");
  if (at == std::string::npos) return "";
  std::string root = uri.substr(at + 5);
  if (size_t amp = root.find('&'); amp != std::string::npos) root.resize(amp);
  return root;
}

// QEMU's pid from libvirt's pid file, when this URI's driver keeps one where
// vmms can read it; 0 otherwise.
int64_t QemuPid(const std::string& uri, const std::string& domain_name) {
  std::string dir;
  if (std::string root = EmbedRoot(uri); !root.empty()) {
    dir = root + "/run/qemu";
  } else if (absl::StartsWith(uri, "qemu:///system")) {
    dir = "/run/libvirt/qemu";
  } else {
    return 0;
  }
  std::ifstream in(dir + "/" + domain_name + ".pid");
  int64_t pid = 0;
  if (!(in >> pid)) return 0;
  return pid;
}

// The event loop implementation is per process, registered once.
std::once_flag event_impl_once;

// How long a QEMU zombie must stay unreaped before the reaper takes it: a
// QEMU that libvirt started itself (the parent of a -daemonize QEMU, the
// capability probes) is libvirt's direct child, which libvirt waits for at
// once (virCommandWait); reaping it first makes libvirt fail ("unable to wait
// for process N: No child processes"). Only orphans nobody waits for are left
// this long.
constexpr absl::Duration kOrphanAge = absl::Milliseconds(300);

// Reaps QEMU processes that the embedded driver left to vmms (see
// LibvirtBackend::Open): only zombies named qemu-system*, never vmms's
// workers or qemu-nbd (their owners reap them for their wait status), and
// only once they stayed zombies for kOrphanAge. `seen` (the reaper thread's)
// remembers when each zombie was first seen.
void ReapQemuZombies(std::map<pid_t, absl::Time>& seen) {
  DIR* tasks = ::opendir("/proc/self/task");
  if (tasks == nullptr) return;
  const absl::Time now = absl::Now();
  std::map<pid_t, absl::Time> still;
  while (dirent* entry = ::readdir(tasks)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream children(
        absl::StrCat("/proc/self/task/", entry->d_name, "/children"));
    pid_t pid;
    while (children >> pid) {
      std::ifstream stat_file(absl::StrCat("/proc/", pid, "/stat"));
      std::string stat;
      std::getline(stat_file, stat);
      size_t open = stat.find('(');
      size_t close = stat.rfind(')');
      if (open == std::string::npos || close == std::string::npos ||
          close + 2 >= stat.size()) {
        continue;
      }
      const std::string comm = stat.substr(open + 1, close - open - 1);
      if (stat[close + 2] != 'Z' || !absl::StartsWith(comm, "qemu-system")) {
        continue;
      }
      auto it = seen.find(pid);
      const absl::Time first = it != seen.end() ? it->second : now;
      if (now - first >= kOrphanAge) {
        ::waitpid(pid, nullptr, WNOHANG);
      } else {
        still[pid] = first;
      }
    }
  }
  ::closedir(tasks);
  seen = std::move(still);
}

}  // namespace

// One connection to libvirt with its event registrations.
struct LibvirtBackend::Connection {
  virConnectPtr conn = nullptr;
  int lifecycle_id = -1;
  int reboot_id = -1;
  bool close_registered = false;
  ~Connection() {
    if (conn == nullptr) return;
    if (lifecycle_id >= 0)
      virConnectDomainEventDeregisterAny(conn, lifecycle_id);
    if (reboot_id >= 0) virConnectDomainEventDeregisterAny(conn, reboot_id);
    if (close_registered)
      virConnectUnregisterCloseCallback(conn, &LibvirtBackend::OnClose);
    virConnectClose(conn);
  }
};

LibvirtBackend::LibvirtBackend(VmStore* store, LibvirtBackendOptions options,
                               VmBackendHost* host)
    : store_(store), options_(std::move(options)), host_(host) {}

LibvirtBackend::~LibvirtBackend() {
  Shutdown("vmms shut down (hard power-off)");
}

void LibvirtBackend::Open() {
  std::call_once(event_impl_once, [] {
    virSetErrorFunc(nullptr, QuietErrors);
    virEventRegisterDefaultImpl();
  });
  if (!EmbedRoot(options_.uri).empty()) {
    // The embedded driver runs QEMU as vmms's grandchild, daemonized: its
    // parent exits, and when QEMU exits libvirt waits for it to disappear.
    // Reparented to a PID 1 that reaps slowly, a destroy takes seconds; as
    // the subreaper vmms reaps it at once.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    reaper_ = std::thread([this] { Reaper(); });
  }
  opened_ = true;
  // A timer keeps the loop returning, so that it sees the end.
  virEventAddTimeout(
      200, [](int, void*) {}, nullptr, nullptr);
  event_loop_ = std::thread([this] { EventLoop(); });
  if (absl::Status s = ConnectOnce(); !s.ok()) {
    spdlog::error("libvirt: {}", std::string(s.message()));
  }
  keeper_ = std::thread([this] { Keeper(); });
  processor_ = std::thread([this] { Processor(); });
}

void LibvirtBackend::Reaper() {
  std::map<pid_t, absl::Time> seen;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&reaper_stop_),
                               absl::Milliseconds(20))) {
        return;
      }
    }
    ReapQemuZombies(seen);
  }
}

void LibvirtBackend::EventLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (loop_stop_) return;
    }
    if (virEventRunDefaultImpl() < 0) {
      spdlog::error("libvirt event loop: {}", LibvirtError());
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
}

absl::Status LibvirtBackend::ConnectOnce() {
  auto connection = std::make_shared<Connection>();
  connection->conn = virConnectOpen(options_.uri.c_str());
  if (connection->conn == nullptr) {
    std::string error =
        absl::StrCat("cannot connect to ", options_.uri, ": ", LibvirtError());
    absl::MutexLock lock(&mu_);
    last_error_ = error;
    reconnect_needed_ = true;
    return absl::UnavailableError(error);
  }
  // Remote connections notice a dead libvirtd by keepalive; the embedded
  // driver has none (and needs none).
  (void)virConnectSetKeepAlive(connection->conn, 5, 3);
  connection->close_registered =
      virConnectRegisterCloseCallback(connection->conn, &OnClose, this,
                                      nullptr) == 0;
  connection->lifecycle_id = virConnectDomainEventRegisterAny(
      connection->conn, nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
      VIR_DOMAIN_EVENT_CALLBACK(&OnLifecycle), this, nullptr);
  connection->reboot_id = virConnectDomainEventRegisterAny(
      connection->conn, nullptr, VIR_DOMAIN_EVENT_ID_REBOOT,
      VIR_DOMAIN_EVENT_CALLBACK(&OnReboot), this, nullptr);
  if (connection->lifecycle_id < 0 || connection->reboot_id < 0) {
    std::string error = absl::StrCat("cannot subscribe to events of ",
                                     options_.uri, ": ", LibvirtError());
    absl::MutexLock lock(&mu_);
    last_error_ = error;
    reconnect_needed_ = true;
    return absl::UnavailableError(error);
  }
  unsigned long version = 0;
  virConnectGetLibVersion(connection->conn, &version);
  {
    absl::MutexLock lock(&mu_);
    conn_ = connection;
    reconnect_needed_ = false;
    last_error_.clear();
    version_ = absl::StrCat(version / 1000000, ".", version / 1000 % 1000, ".",
                            version % 1000);
  }
  spdlog::info("libvirt: connected to {} (libvirt {}.{}.{})", options_.uri,
               version / 1000000, version / 1000 % 1000, version % 1000);
  return absl::OkStatus();
}

void LibvirtBackend::OnClose(virConnectPtr, int reason, void* opaque) {
  auto* self = static_cast<LibvirtBackend*>(opaque);
  spdlog::warn("libvirt: connection to {} closed (reason {}); reconnecting",
               self->options_.uri, reason);
  absl::MutexLock lock(&self->mu_);
  self->reconnect_needed_ = true;
  self->last_error_ = absl::StrCat("connection to ", self->options_.uri,
                                   " lost (reason ", reason, ")");
}

void LibvirtBackend::Keeper() {
  absl::Duration backoff = absl::Milliseconds(500);
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopping_ || reconnect_needed_;
      };
      mu_.Await(absl::Condition(&wake));
      if (stopping_) return;
      // The old connection goes (its callbacks with it) before a new one.
      conn_.reset();
    }
    if (ConnectOnce().ok()) {
      backoff = absl::Milliseconds(500);
      // The consoles were streams of the lost connection: reconcile opens
      // them again on this one.
      std::vector<std::shared_ptr<VmRuntime>> runtimes;
      {
        absl::MutexLock lock(&mu_);
        for (const auto& [uuid, runtime] : runtimes_) {
          runtimes.push_back(runtime);
        }
      }
      for (const std::shared_ptr<VmRuntime>& runtime : runtimes) {
        absl::MutexLock lock(&runtime->mu);
        if (runtime->console != nullptr) runtime->console->End();
      }
      ReconcileAll(" (while vmms was not connected to libvirt)");
      // A restarted libvirtd re-attaches to its QEMU processes in the
      // background: right after it accepts connections it can still call a
      // domain whose QEMU died meanwhile running, and settle it later without
      // an event we would see. Look again once it had time to notice.
      for (const absl::Duration later : {absl::Seconds(2), absl::Seconds(8)}) {
        {
          absl::MutexLock lock(&mu_);
          if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), later)) break;
        }
        ReconcileAll(" (while vmms was not connected to libvirt)");
      }
      continue;
    }
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), backoff);
    backoff = std::min(backoff * 2, options_.reconnect_max);
  }
}

int LibvirtBackend::OnLifecycle(virConnectPtr, virDomainPtr domain, int event,
                                int detail, void* opaque) {
  char uuid[VIR_UUID_STRING_BUFLEN];
  if (virDomainGetUUIDString(domain, uuid) != 0) return 0;
  static_cast<LibvirtBackend*>(opaque)->Enqueue(
      Event{uuid, /*reboot=*/false, event, detail});
  return 0;
}

int LibvirtBackend::OnReboot(virConnectPtr, virDomainPtr domain, void* opaque) {
  char uuid[VIR_UUID_STRING_BUFLEN];
  if (virDomainGetUUIDString(domain, uuid) != 0) return 0;
  static_cast<LibvirtBackend*>(opaque)->Enqueue(
      Event{uuid, /*reboot=*/true, 0, 0});
  return 0;
}

void LibvirtBackend::Enqueue(Event event) {
  event.time = absl::Now();
  absl::MutexLock lock(&mu_);
  events_.push_back(std::move(event));
}

void LibvirtBackend::Processor() {
  while (true) {
    Event event;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return processor_stop_ || !events_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (events_.empty()) return;
      event = std::move(events_.front());
      events_.pop_front();
    }
    // Domains vmms defined carry the VM's uuid as theirs.
    absl::StatusOr<Vm> vm = store_->GetByUuid(event.domain_uuid);
    if (!vm.ok() || !IsLibvirt(*vm)) continue;
    if (!event.reboot && event.event == VIR_DOMAIN_EVENT_CRASHED &&
        event.detail == VIR_DOMAIN_EVENT_CRASHED_PANICKED) {
      std::shared_ptr<VmRuntime> runtime = RuntimeOf(vm->uuid());
      absl::MutexLock record(&runtime->record_mu);
      RecordPanicLocked(*vm, *runtime, event.time, "");
      if (absl::StatusOr<Vm> now = store_->GetByUuid(vm->uuid()); now.ok()) {
        ReconcileLocked(*now, *runtime, "");
      }
      continue;
    }
    if (!event.reboot) {
      Reconcile(vm->uuid(), "");
      continue;
    }
    std::shared_ptr<VmRuntime> runtime = RuntimeOf(vm->uuid());
    absl::MutexLock record(&runtime->record_mu);
    {
      absl::MutexLock lock(&runtime->mu);
      if (event.time - runtime->last_reboot < kRebootBurst) continue;
    }
    absl::StatusOr<Vm> current = store_->GetByUuid(vm->uuid());
    if (current.ok() && current->state() == VM_STATE_RUNNING &&
        GuardRebootLocked(*current, *runtime, "guest rebooted (libvirt)")) {
      (void)store_->RecordReboot(vm->uuid(), "guest rebooted (libvirt)");
      spdlog::info("VM {}: guest rebooted", vm->name());
      absl::MutexLock lock(&runtime->mu);
      runtime->last_reboot = event.time;
    }
  }
}

absl::StatusOr<LibvirtBackend::ConnPtr> LibvirtBackend::Conn() {
  {
    absl::MutexLock lock(&mu_);
    if (conn_ != nullptr && !reconnect_needed_) return conn_;
  }
  return Unavailable("");
}

absl::Status LibvirtBackend::Unavailable(const std::string& what) {
  std::string last_error;
  {
    absl::MutexLock lock(&mu_);
    last_error = last_error_;
  }
  return absl::UnavailableError(absl::StrCat(
      what.empty() ? "" : what + ": ", "libvirt at ", options_.uri,
      " is not reachable",
      last_error.empty() ? std::string() : " (" + last_error + ")",
      "; vmms reconnects by itself: check that libvirt runs there (e.g. "
      "systemctl status libvirtd) and retry"));
}

absl::StatusOr<LibvirtBackend::DomainPtr> LibvirtBackend::DomainOf(
    Connection& conn, const Vm& vm) {
  DomainPtr domain(virDomainLookupByUUIDString(conn.conn, vm.uuid().c_str()));
  if (domain == nullptr) {
    if (LibvirtErrorCode() != VIR_ERR_NO_DOMAIN) {
      // Not an answer about the domain: libvirt could not be asked.
      return Unavailable(
          absl::StrCat("VM '", vm.name(), "': ", LibvirtError()));
    }
    return absl::NotFoundError(absl::StrCat(
        "VM '", vm.name(), "': libvirt has no domain ", DomainNameOf(vm),
        " (uuid ", vm.uuid(), "): ", LibvirtError()));
  }
  return domain;
}

std::shared_ptr<LibvirtBackend::VmRuntime> LibvirtBackend::RuntimeOf(
    const std::string& uuid) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<VmRuntime>& runtime = runtimes_[uuid];
  if (runtime == nullptr) runtime = std::make_shared<VmRuntime>();
  return runtime;
}

absl::Status LibvirtBackend::Create(const Vm& vm) {
  absl::StatusOr<ConnPtr> conn = Conn();
  if (!conn.ok()) {
    return Unavailable(absl::StrCat("VM '", vm.name(), "' cannot be defined"));
  }
  if (absl::Status s = LibvirtSupports(vm.name(), vm.config()); !s.ok()) {
    return s;
  }
  const std::string xml = LibvirtDomainXml(vm);
  DomainPtr domain(virDomainDefineXML((*conn)->conn, xml.c_str()));
  if (domain == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("VM '", vm.name(), "': libvirt refused its domain ",
                     DomainNameOf(vm), ": ", LibvirtError()));
  }
  spdlog::info("VM {}: libvirt domain {} defined", vm.name(), DomainNameOf(vm));
  return absl::OkStatus();
}

void LibvirtBackend::OpenConsole(Connection& conn, virDomainPtr domain,
                                 const Vm& vm, VmRuntime& runtime) {
  virStreamPtr stream = virStreamNew(conn.conn, VIR_STREAM_NONBLOCK);
  if (stream == nullptr) return;
  if (virDomainOpenConsole(domain, nullptr, stream, VIR_DOMAIN_CONSOLE_FORCE) !=
      0) {
    spdlog::warn("VM {}: no serial console: {}", vm.name(), LibvirtError());
    virStreamFree(stream);
    return;
  }
  RuntimePaths paths = RuntimePathsFor(options_.state_dir, vm.uuid());
  std::error_code ec;
  std::filesystem::create_directories(paths.dir, ec);
  auto feed = std::make_shared<ConsoleFeed>(paths.console_log);
  // The writer keeps its own reference: a write that races the end finds a
  // finished stream, never a freed one.
  virStreamRef(stream);
  std::shared_ptr<virStream> writer_stream(stream, virStreamFree);
  feed->SetWriter([writer_stream](absl::string_view data) -> absl::Status {
    size_t sent = 0;
    for (int tries = 0; sent < data.size() && tries < 100; ++tries) {
      int n = virStreamSend(writer_stream.get(), data.data() + sent,
                            data.size() - sent);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (n == -2) {
        absl::SleepFor(absl::Milliseconds(10));
      } else {
        return absl::UnavailableError(
            absl::StrCat("console input: ", LibvirtError()));
      }
    }
    return absl::OkStatus();
  });
  struct Pump {
    std::shared_ptr<ConsoleFeed> feed;
  };
  auto* pump = new Pump{feed};
  virStreamEventAddCallback(
      stream,
      VIR_STREAM_EVENT_READABLE | VIR_STREAM_EVENT_ERROR |
          VIR_STREAM_EVENT_HANGUP,
      [](virStreamPtr st, int events, void* opaque) {
        auto* p = static_cast<Pump*>(opaque);
        char buffer[16384];
        bool done =
            (events & (VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP)) != 0;
        if (!done && (events & VIR_STREAM_EVENT_READABLE) != 0) {
          int n = virStreamRecv(st, buffer, sizeof buffer);
          if (n > 0) {
            p->feed->Append(absl::string_view(buffer, n));
          } else if (n != -2) {
            done = true;
          }
        }
        if (done) {
          p->feed->End();
          virStreamEventRemoveCallback(st);
          virStreamAbort(st);
        }
      },
      pump,
      [](void* opaque) {
        auto* p = static_cast<Pump*>(opaque);
        p->feed->End();
        delete p;
      });
  // The callback's registration holds what it needs; the stream object
  // lives until its callback is removed and this reference goes.
  virStreamFree(stream);
  uint64_t generation;
  {
    absl::MutexLock lock(&mu_);
    generation = next_console_generation_++;
  }
  absl::MutexLock lock(&runtime.mu);
  if (runtime.console != nullptr) runtime.console->End();
  runtime.console = feed;
  runtime.console_generation = generation;
  runtime.crash_console_mark = 0;
}

void LibvirtBackend::EndConsole(VmRuntime& runtime) {
  absl::MutexLock lock(&runtime.mu);
  if (runtime.console != nullptr) runtime.console->End();
  runtime.console.reset();
}

absl::StatusOr<Vm> LibvirtBackend::Start(const Vm& vm,
                                         const std::string& reason) {
  const absl::Time t0 = absl::Now();
  std::shared_ptr<VmRuntime> runtime = RuntimeOf(vm.uuid());
  absl::MutexLock record(&runtime->record_mu);
  absl::StatusOr<ConnPtr> conn = Conn();
  if (!conn.ok()) {
    return Unavailable(absl::StrCat("VM '", vm.name(), "' cannot start"));
  }
  {
    absl::MutexLock lock(&runtime->mu);
    runtime->stop_reason.reset();
    runtime->shutdown_requested = false;
    runtime->crash_reason.reset();
    runtime->reboot_guard.reset();
  }
  absl::StatusOr<Vm> starting =
      store_->SetState(vm.uuid(), VM_STATE_STARTING, reason);
  if (!starting.ok()) return starting.status();
  auto fail = [&](absl::Status error) -> absl::Status {
    std::optional<std::string> stop_reason;
    {
      absl::MutexLock lock(&runtime->mu);
      stop_reason = runtime->stop_reason;
    }
    if (stop_reason.has_value()) {
      (void)store_->SetState(vm.uuid(), VM_STATE_OFF, *stop_reason, 0);
      return absl::AbortedError(
          absl::StrCat("VM '", vm.name(), "' was stopped while starting"));
    }
    (void)store_->SetState(vm.uuid(), VM_STATE_OFF,
                           std::string(error.message()), 0);
    spdlog::error("VM {}: start failed: {}", vm.name(),
                  std::string(error.message()));
    return error;
  };
  // The domain follows the definition as it is now (UpdateVm redefines it
  // too; this also restores a domain undefined behind vmms's back).
  // An adopted domain keeps libvirt's definition.
  DomainPtr domain;
  if (vm.libvirt().adopted()) {
    absl::StatusOr<DomainPtr> found = DomainOf(**conn, vm);
    if (!found.ok()) return fail(found.status());
    domain = *std::move(found);
  } else {
    if (absl::Status s = LibvirtSupports(vm.name(), vm.config()); !s.ok()) {
      return fail(s);
    }
    const std::string xml = LibvirtDomainXml(vm);
    domain.reset(virDomainDefineXML((*conn)->conn, xml.c_str()));
  }
  if (domain == nullptr) {
    return fail(absl::FailedPreconditionError(absl::StrCat(
        "libvirt refused domain ", DomainNameOf(vm), ": ", LibvirtError())));
  }
  const absl::Time defined = absl::Now();
  // Paused first, so that the console is open before the guest's first byte.
  if (virDomainCreateWithFlags(domain.get(), VIR_DOMAIN_START_PAUSED) != 0) {
    return fail(absl::FailedPreconditionError(
        absl::StrCat("libvirt could not start domain ", DomainNameOf(vm), ": ",
                     LibvirtError())));
  }
  const absl::Time created = absl::Now();
  OpenConsole(**conn, domain.get(), vm, *runtime);
  const absl::Time console_open = absl::Now();
  if (virDomainResume(domain.get()) != 0) {
    std::string error = LibvirtError();
    virDomainDestroy(domain.get());
    return fail(absl::InternalError(absl::StrCat(
        "libvirt could not run domain ", DomainNameOf(vm), ": ", error)));
  }
  const absl::Time resumed = absl::Now();
  const int run_id = static_cast<int>(virDomainGetID(domain.get()));
  const int64_t pid = QemuPid(options_.uri, DomainNameOf(vm));
  {
    absl::MutexLock lock(&runtime->mu);
    runtime->run_id = run_id;
    runtime->up_since = absl::Now();
  }
  (void)store_->SetWorkerPid(vm.uuid(), pid, run_id);
  absl::StatusOr<Vm> running = store_->SetState(
      vm.uuid(), VM_STATE_RUNNING, "domain started (libvirt)", pid);
  if (!running.ok()) return fail(running.status());
  auto ms = [](absl::Duration d) { return absl::ToDoubleMilliseconds(d); };
  spdlog::info(
      "VM {}: libvirt domain {} running (id {}, QEMU pid {}) in {:.1f} ms: "
      "Starting recorded + defined {:.1f}, created paused {:.1f}, console "
      "{:.1f}, resumed {:.1f}, Running recorded {:.1f}",
      vm.name(), DomainNameOf(vm), run_id, pid, ms(absl::Now() - t0),
      ms(defined - t0), ms(created - defined), ms(console_open - created),
      ms(resumed - console_open), ms(absl::Now() - resumed));
  return running;
}

absl::StatusOr<Vm> LibvirtBackend::DoStop(const Vm& vm,
                                          const std::string& reason) {
  std::shared_ptr<VmRuntime> runtime = RuntimeOf(vm.uuid());
  absl::StatusOr<ConnPtr> conn = Conn();
  if (!conn.ok()) {
    return Unavailable(absl::StrCat("VM '", vm.name(), "' cannot be stopped"));
  }
  {
    absl::MutexLock lock(&runtime->mu);
    runtime->stop_reason = reason;
  }
  absl::StatusOr<Vm> current = store_->GetByUuid(vm.uuid());
  if (current.ok() && current->state() != VM_STATE_STOPPING &&
      IsAllowedTransition(current->state(), VM_STATE_STOPPING)) {
    (void)store_->SetState(vm.uuid(), VM_STATE_STOPPING, "stop requested");
  }
  absl::StatusOr<DomainPtr> domain = DomainOf(**conn, vm);
  if (domain.ok() && virDomainIsActive(domain->get()) == 1 &&
      virDomainDestroy(domain->get()) != 0 &&
      virDomainIsActive(domain->get()) == 1) {
    return absl::InternalError(
        absl::StrCat("VM '", vm.name(), "': libvirt could not destroy domain ",
                     DomainNameOf(vm), ": ", LibvirtError()));
  }
  {
    absl::MutexLock record(&runtime->record_mu);
    absl::StatusOr<Vm> now = store_->GetByUuid(vm.uuid());
    if (now.ok()) ReconcileLocked(*now, *runtime, "");
    absl::MutexLock lock(&runtime->mu);
    runtime->stop_reason.reset();
  }
  return store_->GetByUuid(vm.uuid());
}

absl::StatusOr<Vm> LibvirtBackend::Stop(const Vm& vm,
                                        const std::string& reason) {
  if (!IsActive(vm.state())) {
    if (absl::Status s = CheckRequest(vm, VmRequest::kStop); !s.ok()) return s;
  }
  return DoStop(vm, reason);
}

absl::StatusOr<Vm> LibvirtBackend::Pause(const Vm& vm) {
  std::shared_ptr<VmRuntime> runtime = RuntimeOf(vm.uuid());
  absl::MutexLock record(&runtime->record_mu);
  absl::StatusOr<ConnPtr> conn = Conn();
  if (!conn.ok()) {
    return Unavailable(absl::StrCat("VM '", vm.name(), "' cannot pause"));
  }
  absl::StatusOr<DomainPtr> domain = DomainOf(**conn, vm);
  if (!domain.ok()) return domain.status();
  if (virDomainSuspend(domain->get()) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("VM '", vm.name(), "': cannot pause: ", LibvirtError()));
  }
  absl::StatusOr<Vm> recorded =
      store_->SetState(vm.uuid(), VM_STATE_PAUSED, "paused by user");
  if (!recorded.ok()) {
    return absl::AbortedError(absl::StrCat(
        "VM '", vm.name(),
        "' was paused but changed meanwhile: ", recorded.status().message()));
  }
  spdlog::info("VM {}: paused", vm.name());
  return recorded;
}

absl::StatusOr<Vm> LibvirtBackend::Resume(const Vm& vm) {
  std::shared_ptr<VmRuntime> runtime = RuntimeOf(vm.uuid());
  absl::MutexLock record(&runtime->record_mu);
  absl::StatusOr<ConnPtr> conn = Conn();
  if (!conn.ok()) {
    return Unavailable(absl::StrCat("VM '", vm.name(), "' cannot resume"));
  }
  absl::StatusOr<DomainPtr> domain = DomainOf(**conn, vm);
  if (!domain.ok()) return domain.status();
  if (virDomainResume(domain->get()) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("VM '", vm.name(), "': cannot resume: ", LibvirtError()));
  }
  absl::StatusOr<Vm> recorded =
      store_->SetState(vm.uuid(), VM_STATE_RUNNING, "resumed by user");
  if (!recorded.ok()) {
    return absl::AbortedError(absl::StrCat(
        "VM '", vm.name(),
        "' was resumed but changed meanwhile: ", recorded.status().message()));
  }
  spdlog::info("VM {}: resumed", vm.name());
  return recorded;
}

absl::StatusOr<Vm> LibvirtBackend::Reset(const Vm& vm) {
  std::shared_ptr<VmRuntime> runtime = RuntimeOf(vm.uuid());
  absl::MutexLock record(&runtime->record_mu);
  absl::StatusOr<ConnPtr> conn = Conn();
  if (!conn.ok()) {
    return Unavailable(absl::StrCat("VM '", vm.name(), "' cannot reset"));
  }
  absl::StatusOr<DomainPtr> domain = DomainOf(**conn, vm);
  if (!domain.ok()) return domain.status();
  if (virDomainReset(domain->get(), 0) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("VM '", vm.name(), "': cannot reset: ", LibvirtError()));
  }
  {
    // The REBOOT events of this reset are recorded by it.
    absl::MutexLock lock(&runtime->mu);
    runtime->last_reboot = absl::Now();
  }
  const std::string reason = "reset by user (hard)";
  if (vm.state() == VM_STATE_PAUSED) {
    // A power cycle runs the guest again, as for hvstack's own workers.
    if (virDomainResume(domain->get()) != 0) {
      spdlog::warn("VM {}: resume after reset: {}", vm.name(), LibvirtError());
    }
    absl::StatusOr<Vm> running =
        store_->SetState(vm.uuid(), VM_STATE_RUNNING, reason);
    if (!running.ok()) return running.status();
  }
  spdlog::info("VM {}: reset", vm.name());
  return store_->RecordReboot(vm.uuid(),
                              absl::StrCat("guest rebooted: ", reason));
}

absl::StatusOr<Vm> LibvirtBackend::Reboot(const Vm& vm) {
  std::shared_ptr<VmRuntime> runtime = RuntimeOf(vm.uuid());
  absl::StatusOr<ConnPtr> conn = Conn();
  if (!conn.ok()) {
    return Unavailable(absl::StrCat("VM '", vm.name(), "' cannot reboot"));
  }
  absl::StatusOr<DomainPtr> domain = DomainOf(**conn, vm);
  if (!domain.ok()) return domain.status();
  // ACPI: the guest reboots itself (a `rebooted` event when it does).
  if (virDomainReboot(domain->get(), VIR_DOMAIN_REBOOT_ACPI_POWER_BTN) == 0) {
    spdlog::info("VM {}: guest asked to reboot", vm.name());
    return store_->GetByUuid(vm.uuid());
  }
  const std::string why = LibvirtError();
  spdlog::info("VM {}: graceful reboot not possible ({}); hard reset",
               vm.name(), why);
  return Reset(vm);
}

absl::StatusOr<Vm> LibvirtBackend::GracefulShutdown(
    const Vm& vm, const ShutdownOptions& options) {
  std::shared_ptr<VmRuntime> runtime = RuntimeOf(vm.uuid());
  absl::StatusOr<ConnPtr> conn = Conn();
  if (!conn.ok()) {
    return Unavailable(absl::StrCat("VM '", vm.name(), "' cannot shut down"));
  }
  absl::StatusOr<DomainPtr> domain = DomainOf(**conn, vm);
  if (!domain.ok()) return domain.status();
  {
    absl::MutexLock lock(&runtime->mu);
    runtime->shutdown_requested = true;
  }
  std::string why;
  // The ACPI power button: an ACPI guest powers off.
  if (virDomainShutdownFlags(domain->get(),
                             VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) == 0) {
    for (absl::Time deadline = absl::Now() + options.timeout;
         absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(20))) {
      absl::StatusOr<Vm> now = store_->GetByUuid(vm.uuid());
      if (now.ok() && !IsActive(now->state())) {
        spdlog::info("VM {}: guest shut down", vm.name());
        return now;
      }
    }
    why = absl::StrCat("the guest did not power off within ",
                       absl::FormatDuration(options.timeout));
  } else {
    why = LibvirtError();
  }
  if (!options.force_off_fallback) {
    absl::MutexLock lock(&runtime->mu);
    runtime->shutdown_requested = false;
    return absl::DeadlineExceededError(absl::StrCat(
        "VM '", vm.name(), "' was not shut down: ", why,
        "; it keeps running (stop it for a hard power-off, or use the "
        "force-off fallback)"));
  }
  spdlog::info("VM {}: {}; forcing it off", vm.name(), why);
  return DoStop(
      vm, absl::StrCat("shutdown requested by user: ", why, "; forced off"));
}

absl::Status LibvirtBackend::Forget(const Vm& vm) {
  absl::StatusOr<ConnPtr> conn = Conn();
  if (!conn.ok()) {
    return Unavailable(absl::StrCat("VM '", vm.name(),
                                    "' cannot be deleted (its domain "
                                    "must be undefined)"));
  }
  DomainPtr domain(
      virDomainLookupByUUIDString((*conn)->conn, vm.uuid().c_str()));
  if (domain != nullptr &&
      virDomainUndefineFlags(domain.get(),
                             VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                                 VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                                 VIR_DOMAIN_UNDEFINE_NVRAM) != 0) {
    return absl::InternalError(
        absl::StrCat("VM '", vm.name(), "': libvirt could not undefine domain ",
                     DomainNameOf(vm), ": ", LibvirtError()));
  }
  {
    absl::MutexLock lock(&mu_);
    runtimes_.erase(vm.uuid());
  }
  spdlog::info("VM {}: libvirt domain {} undefined", vm.name(),
               DomainNameOf(vm));
  return absl::OkStatus();
}

absl::Status LibvirtBackend::PrepareUpdate(
    const Vm& vm, const hvstack::v1::VmConfig& merged,
    const std::vector<std::string>& paths) {
  bool hardware = false;
  for (const std::string& path : paths) {
    if (path != "autostart" && path != "restart_policy") hardware = true;
  }
  if (!hardware) return absl::OkStatus();
  if (vm.libvirt().adopted()) {
    return absl::FailedPreconditionError(AdoptedRefusal(vm, "its hardware"));
  }
  // Changing hardware needs the VM Off (checked by the store too, but libvirt
  // must not be redefined for a running VM first).
  if (absl::Status s = CheckRequest(vm, VmRequest::kUpdateHardware); !s.ok())
    return s;
  absl::StatusOr<ConnPtr> conn = Conn();
  if (!conn.ok()) {
    return Unavailable(absl::StrCat("VM '", vm.name(), "' cannot be updated"));
  }
  if (absl::Status s = LibvirtSupports(vm.name(), merged); !s.ok()) return s;
  Vm updated = vm;
  *updated.mutable_config() = merged;
  const std::string xml = LibvirtDomainXml(updated);
  DomainPtr domain(virDomainDefineXML((*conn)->conn, xml.c_str()));
  if (domain == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "VM '", vm.name(), "': libvirt refused the updated domain ",
        DomainNameOf(vm), ": ", LibvirtError()));
  }
  return absl::OkStatus();
}

Vm LibvirtBackend::Describe(Vm vm) {
  const std::string domain_name = DomainNameOf(vm);
  hvstack::v1::LibvirtDomain* info = vm.mutable_libvirt();
  info->set_domain_name(domain_name);
  info->set_domain_uuid(vm.uuid());
  info->set_uri(options_.uri);
  absl::StatusOr<ConnPtr> conn = Conn();
  info->set_connected(conn.ok());
  if (!conn.ok()) {
    info->set_error(std::string(conn.status().message()));
    return vm;
  }
  absl::StatusOr<DomainPtr> domain = DomainOf(**conn, vm);
  if (!domain.ok()) {
    info->set_error(std::string(domain.status().message()));
    return vm;
  }
  int state = 0, reason = 0;
  if (virDomainGetState(domain->get(), &state, &reason, 0) == 0) {
    info->set_domain_state(DescribeState(state, reason));
  }
  return vm;
}

absl::StatusOr<ConsoleSource> LibvirtBackend::Console(const Vm& vm) {
  ConsoleSource source;
  source.console_log =
      RuntimePathsFor(options_.state_dir, vm.uuid()).console_log;
  std::shared_ptr<VmRuntime> runtime = RuntimeOf(vm.uuid());
  absl::MutexLock lock(&runtime->mu);
  source.feed = runtime->console;
  source.worker_generation = runtime->console_generation;
  return source;
}

std::optional<ConsoleSource> LibvirtBackend::NextConsole(const Vm&, uint64_t,
                                                         absl::Duration) {
  // A guest reboot keeps the domain's console: nothing to follow.
  return std::nullopt;
}

hvstack::v1::VmStats LibvirtBackend::Stats(const Vm& vm, absl::Duration) {
  hvstack::v1::VmStats stats;
  stats.set_name(vm.name());
  stats.set_uuid(vm.uuid());
  stats.set_state(vm.state());
  stats.set_worker_pid(vm.worker_pid());
  stats.set_reboot_count(vm.reboot_count());
  stats.set_restart_count(vm.restart_count());
  if (!IsActive(vm.state())) return stats;
  std::shared_ptr<VmRuntime> runtime = RuntimeOf(vm.uuid());
  {
    absl::MutexLock lock(&runtime->mu);
    if (runtime->up_since != absl::Time()) {
      const absl::Duration up = absl::Now() - runtime->up_since;
      stats.mutable_uptime()->set_seconds(absl::ToInt64Seconds(up));
      stats.mutable_uptime()->set_nanos(static_cast<int32_t>(
          absl::ToInt64Nanoseconds(up % absl::Seconds(1))));
    }
    if (runtime->console != nullptr) {
      uint64_t position = 0;
      std::string ignored;
      // Bytes the console carried (the feed's absolute end).
      runtime->console->Read(&position, &ignored, absl::ZeroDuration());
      stats.set_console_bytes(position);
    }
  }
  absl::StatusOr<ConnPtr> conn = Conn();
  if (!conn.ok()) {
    stats.set_worker_error(std::string(conn.status().message()));
    return stats;
  }
  absl::StatusOr<DomainPtr> domain = DomainOf(**conn, vm);
  if (!domain.ok()) {
    stats.set_worker_error(std::string(domain.status().message()));
    return stats;
  }
  virDomainPtr domains[] = {domain->get(), nullptr};
  virDomainStatsRecordPtr* records = nullptr;
  const int count = virDomainListGetStats(
      domains,
      VIR_DOMAIN_STATS_STATE | VIR_DOMAIN_STATS_CPU_TOTAL |
          VIR_DOMAIN_STATS_BALLOON | VIR_DOMAIN_STATS_VCPU,
      &records, 0);
  if (count < 0) {
    stats.set_worker_error(absl::StrCat("libvirt stats: ", LibvirtError()));
    return stats;
  }
  std::map<uint32_t, uint64_t> vcpu_time;
  for (int i = 0; i < count; ++i) {
    for (int j = 0; j < records[i]->nparams; ++j) {
      const virTypedParameter& p = records[i]->params[j];
      const absl::string_view field = p.field;
      const uint64_t value = p.type == VIR_TYPED_PARAM_ULLONG ? p.value.ul
                             : p.type == VIR_TYPED_PARAM_UINT ? p.value.ui
                                                              : 0;
      if (field == "cpu.time") {
        stats.set_worker_cpu_time_ns(value);
      } else if (field == "balloon.rss") {
        stats.set_worker_rss_bytes(value * 1024);
      } else if (field == "balloon.current") {
        stats.set_guest_memory_bytes(value * 1024);
      } else if (absl::StartsWith(field, "vcpu.") &&
                 absl::EndsWith(field, ".time")) {
        std::vector<std::string> parts = absl::StrSplit(field, '.');
        uint32_t index = 0;
        if (parts.size() == 3 && absl::SimpleAtoi(parts[1], &index)) {
          vcpu_time[index] = value;
        }
      }
    }
  }
  virDomainStatsRecordListFree(records);
  for (const auto& [index, time] : vcpu_time) {
    hvstack::v1::VpStats* vp = stats.add_vps();
    vp->set_index(index);
    vp->set_cpu_time_ns(time);
  }
  return stats;
}

void LibvirtBackend::ReconcileLocked(const Vm& vm, VmRuntime& runtime,
                                     const std::string& context) {
  absl::StatusOr<ConnPtr> conn = Conn();
  if (!conn.ok()) return;  // Nothing known; the reconnect reconciles.
  absl::StatusOr<Vm> recorded = store_->GetByUuid(vm.uuid());
  if (!recorded.ok()) return;
  const VmState was = recorded->state();
  DomainPtr domain(
      virDomainLookupByUUIDString((*conn)->conn, vm.uuid().c_str()));
  int state = VIR_DOMAIN_SHUTOFF, reason = VIR_DOMAIN_SHUTOFF_UNKNOWN;
  std::string libvirt_says = "libvirt: no such domain";
  int run_id = -1;
  if (domain != nullptr) {
    if (virDomainGetState(domain.get(), &state, &reason, 0) != 0) return;
    libvirt_says = absl::StrCat("libvirt: ", DescribeState(state, reason));
    run_id = static_cast<int>(virDomainGetID(domain.get()));
  }
  if (state == VIR_DOMAIN_NOSTATE) return;
  const hvstack::v1::GuestCrashPolicy policy =
      recorded->config().on_guest_crash();
  // Crashed (panicked) with its QEMU alive: kept for inspection (<on_crash>
  // preserve: Paused here) or about to be reset by libvirt (restart: still
  // Running). Under stop libvirt is destroying it.
  const bool crashed_alive =
      state == VIR_DOMAIN_CRASHED &&
      (policy == hvstack::v1::GUEST_CRASH_POLICY_PRESERVE ||
       policy == hvstack::v1::GUEST_CRASH_POLICY_RESTART) &&
      domain != nullptr && virDomainIsActive(domain.get()) == 1;
  const bool off = state == VIR_DOMAIN_SHUTOFF ||
                   (state == VIR_DOMAIN_CRASHED && !crashed_alive);
  const bool paused =
      state == VIR_DOMAIN_PAUSED ||
      (crashed_alive && policy == hvstack::v1::GUEST_CRASH_POLICY_PRESERVE);

  std::optional<std::string> stop_reason;
  std::optional<std::string> crash_reason;
  bool shutdown_requested = false;
  absl::Time up_since;
  int known_run = -1;
  {
    absl::MutexLock lock(&runtime.mu);
    stop_reason = runtime.stop_reason;
    crash_reason = runtime.crash_reason;
    shutdown_requested = runtime.shutdown_requested;
    up_since = runtime.up_since;
    known_run = runtime.run_id;
  }
  if (known_run < 0) {
    absl::StatusOr<int64_t> stored = store_->WorkerStartTicks(vm.uuid());
    if (stored.ok() && *stored > 0) known_run = static_cast<int>(*stored);
  }
  auto record = [&](VmState to, const std::string& why,
                    std::optional<int64_t> pid = std::nullopt) {
    absl::StatusOr<Vm> updated = store_->SetState(vm.uuid(), to, why, pid);
    if (!updated.ok()) {
      spdlog::warn("VM {}: cannot record {}: {}", vm.name(), StateName(to),
                   std::string(updated.status().message()));
      return updated;
    }
    spdlog::info("VM {}: {} \"{}\"", vm.name(), StateName(to), why);
    return updated;
  };
  auto record_end = [&](const std::string& cause) {
    const bool crashed =
        !stop_reason.has_value() && !shutdown_requested &&
        (state == VIR_DOMAIN_CRASHED ||
         (state == VIR_DOMAIN_SHUTOFF && reason == VIR_DOMAIN_SHUTOFF_CRASHED));
    std::string why =
        stop_reason.has_value() ? *stop_reason
        : shutdown_requested && !crashed
            ? absl::StrCat("guest shut down: shutdown requested by user (",
                           libvirt_says, ")")
        : crashed && crash_reason.has_value()
            // The guest's own crash report (its panic line).
            ? absl::StrCat(*crash_reason, " (", libvirt_says, ")", context)
            : absl::StrCat(cause, " (", libvirt_says, ")", context);
    absl::StatusOr<Vm> ended =
        record(crashed ? VM_STATE_CRASHED : VM_STATE_OFF, why, 0);
    EndConsole(runtime);
    {
      absl::MutexLock lock(&runtime.mu);
      runtime.shutdown_requested = false;
      runtime.run_id = -1;
      runtime.crash_reason.reset();
    }
    if (ended.ok() && !stop_reason.has_value() && !shutdown_requested &&
        was != VM_STATE_STARTING && host_ != nullptr) {
      host_->VmEndedOnItsOwn(*ended, up_since);
    }
  };
  auto record_started = [&](const std::string& why) {
    const int64_t pid = QemuPid(options_.uri, DomainNameOf(vm));
    {
      absl::MutexLock lock(&runtime.mu);
      runtime.run_id = run_id;
      runtime.up_since = absl::Now();
    }
    (void)store_->SetWorkerPid(vm.uuid(), pid, run_id);
    (void)record(VM_STATE_RUNNING, why, pid);
  };

  if (off) {
    if (IsActive(was)) {
      const bool crashed =
          state == VIR_DOMAIN_CRASHED ||
          (state == VIR_DOMAIN_SHUTOFF && reason == VIR_DOMAIN_SHUTOFF_CRASHED);
      if (crashed && was == VM_STATE_RUNNING && !crash_reason.has_value()) {
        // The guest's PANICKED event may still wait behind this reconcile:
        // record its crash (event, last_guest_crash, panic line) first.
        RecordPanicLocked(vm, runtime, absl::Now(), context);
        absl::MutexLock lock(&runtime.mu);
        crash_reason = runtime.crash_reason;
      }
      record_end(state == VIR_DOMAIN_SHUTOFF ? ShutoffCause(reason)
                                             : "guest crashed");
    }
    return;
  }
  // The domain runs (or is paused).
  if (was == VM_STATE_STOPPING && !stop_reason.has_value()) {
    // A stop that a previous vmms did not finish.
    if (virDomainDestroy(domain.get()) == 0) {
      {
        absl::MutexLock lock(&runtime.mu);
        runtime.stop_reason = "stopped by user (hard power-off)";
      }
      stop_reason = "stopped by user (hard power-off)";
      record_end("domain stopped");
      absl::MutexLock lock(&runtime.mu);
      runtime.stop_reason.reset();
    }
    return;
  }
  if (IsActive(was) && was != VM_STATE_STARTING && known_run > 0 &&
      run_id != known_run) {
    // Stopped and started again meanwhile: both are recorded.
    (void)record(VM_STATE_OFF,
                 absl::StrCat("domain stopped outside vmms", context), 0);
    EndConsole(runtime);
    recorded = store_->GetByUuid(vm.uuid());
    if (!recorded.ok()) return;
  }
  VmState now = recorded->state();
  if (now == VM_STATE_OFF || now == VM_STATE_CRASHED) {
    (void)record(VM_STATE_STARTING,
                 absl::StrCat("domain started outside vmms (", libvirt_says,
                              ")", context));
    record_started("domain running (libvirt)");
    now = VM_STATE_RUNNING;
  } else if (now == VM_STATE_STARTING) {
    record_started(
        absl::StrCat("domain running (", libvirt_says, ")", context));
    now = VM_STATE_RUNNING;
  }
  if (paused && now == VM_STATE_RUNNING && crashed_alive) {
    // A panic whose event vmms did not see (it was down, or not connected).
    RecordPanicLocked(vm, runtime, absl::Now(), context);
  } else if (paused && now == VM_STATE_RUNNING &&
             reason != VIR_DOMAIN_PAUSED_STARTING_UP) {
    (void)record(VM_STATE_PAUSED, absl::StrCat("paused outside vmms (",
                                               libvirt_says, ")", context));
  } else if (!paused && now == VM_STATE_PAUSED) {
    (void)record(VM_STATE_RUNNING, absl::StrCat("resumed outside vmms (",
                                                libvirt_says, ")", context));
  }
  bool has_console;
  {
    absl::MutexLock lock(&runtime.mu);
    // A console of a lost connection has ended: a fresh one is opened.
    has_console = runtime.console != nullptr && !runtime.console->Ended();
    runtime.run_id = run_id;
    if (runtime.up_since == absl::Time()) runtime.up_since = absl::Now();
  }
  if (!has_console) OpenConsole(**conn, domain.get(), vm, runtime);
}

void LibvirtBackend::RecordPanicLocked(const Vm& vm, VmRuntime& runtime,
                                       absl::Time when,
                                       const std::string& context) {
  absl::StatusOr<Vm> current = store_->GetByUuid(vm.uuid());
  if (!current.ok() || current->state() != VM_STATE_RUNNING) return;
  // The serial console since the last crash: its panic line is the summary,
  // the console's tail the message.
  std::shared_ptr<ConsoleFeed> feed;
  uint64_t mark = 0;
  {
    absl::MutexLock lock(&runtime.mu);
    feed = runtime.console;
    mark = runtime.crash_console_mark;
  }
  std::string text;  // The feed from `text_start` on.
  uint64_t text_start = 0;
  uint64_t position = 0;
  std::string panic_line;
  if (feed != nullptr) {
    const absl::Time deadline = absl::Now() + kPanicLineWait;
    std::string more;
    bool first = true;
    while (true) {
      const bool open =
          feed->Read(&position, &more,
                     first ? absl::ZeroDuration() : deadline - absl::Now());
      if (first) text_start = position - more.size();
      first = false;
      text += more;
      const uint64_t from = std::max(mark, text_start) - text_start;
      panic_line = PanicLine(absl::string_view(text).substr(
          std::min<uint64_t>(from, text.size())));
      if (!panic_line.empty() || !open || absl::Now() >= deadline) break;
    }
    absl::MutexLock lock(&runtime.mu);
    if (runtime.console == feed) runtime.crash_console_mark = position;
  }
  hvstack::internal::GuestCrashReport report;
  report.set_time_us(absl::ToUnixMicros(when));
  report.set_vp(0);  // pvpanic does not say which.
  for (int i = 0; i < 5; ++i) report.add_parameters(0);
  report.set_message(text.size() > kCrashMessageBytes
                         ? text.substr(text.size() - kCrashMessageBytes)
                         : text);
  report.set_summary(panic_line.empty()
                         ? "panic reported through the pvpanic device (no "
                           "panic line on the serial console)"
                         : panic_line);
  const hvstack::v1::GuestCrash crash = ToPublicGuestCrash(report);
  const std::string reason = GuestCrashReason(crash);
  const hvstack::v1::GuestCrashPolicy policy =
      current->config().on_guest_crash();
  spdlog::warn("VM {}: guest crashed: {} (on_guest_crash {}){}", vm.name(),
               crash.summary(),
               policy == hvstack::v1::GUEST_CRASH_POLICY_PRESERVE  ? "preserve"
               : policy == hvstack::v1::GUEST_CRASH_POLICY_RESTART ? "restart"
                                                                   : "stop",
               context);
  switch (policy) {
    case hvstack::v1::GUEST_CRASH_POLICY_PRESERVE: {
      absl::StatusOr<bool> recorded = store_->RecordGuestCrash(
          vm.uuid(), crash, VM_STATE_PAUSED, reason + context);
      if (!recorded.ok()) {
        spdlog::warn("VM {}: cannot record the guest's crash: {}", vm.name(),
                     recorded.status().ToString());
      }
      return;
    }
    case hvstack::v1::GUEST_CRASH_POLICY_RESTART: {
      (void)store_->RecordGuestCrash(vm.uuid(), crash);
      if (!GuardRebootLocked(*current, runtime, reason)) return;
      (void)store_->RecordReboot(vm.uuid(),
                                 absl::StrCat("guest rebooted: ", reason));
      // libvirt's reset shows as a burst of REBOOT events: this reboot.
      absl::MutexLock lock(&runtime.mu);
      runtime.last_reboot = absl::Now();
      return;
    }
    default: {
      (void)store_->RecordGuestCrash(vm.uuid(), crash);
      absl::MutexLock lock(&runtime.mu);
      runtime.crash_reason = reason;
      return;
    }
  }
}

bool LibvirtBackend::GuardRebootLocked(const Vm& vm, VmRuntime& runtime,
                                       const std::string& last) {
  std::string why;
  absl::Time up_since;
  {
    absl::MutexLock lock(&runtime.mu);
    if (!runtime.reboot_guard.has_value()) {
      runtime.reboot_guard.emplace(RebootGuard::kDefaultMaxReboots,
                                   RebootGuard::kDefaultWindow);
    }
    if (runtime.reboot_guard->Record(absl::Now())) return true;
    why = absl::StrCat("guest crashed: reboot loop: ",
                       runtime.reboot_guard->Describe(), "; last: ", last);
    runtime.reboot_guard.reset();
    up_since = runtime.up_since;
  }
  spdlog::error("VM {}: {}", vm.name(), why);
  if (absl::StatusOr<ConnPtr> conn = Conn(); conn.ok()) {
    if (absl::StatusOr<DomainPtr> domain = DomainOf(**conn, vm); domain.ok()) {
      if (virDomainDestroy(domain->get()) != 0) {
        spdlog::warn("VM {}: cannot destroy domain {}: {}", vm.name(),
                     DomainNameOf(vm), LibvirtError());
      }
    }
  }
  absl::StatusOr<Vm> ended =
      store_->SetState(vm.uuid(), VM_STATE_CRASHED, why, 0);
  EndConsole(runtime);
  {
    absl::MutexLock lock(&runtime.mu);
    runtime.run_id = -1;
  }
  if (ended.ok() && host_ != nullptr) host_->VmEndedOnItsOwn(*ended, up_since);
  return false;
}

void LibvirtBackend::Reconcile(const std::string& vm_uuid,
                               const std::string& context) {
  absl::StatusOr<Vm> vm = store_->GetByUuid(vm_uuid);
  if (!vm.ok() || !IsLibvirt(*vm)) return;
  std::shared_ptr<VmRuntime> runtime = RuntimeOf(vm_uuid);
  absl::MutexLock record(&runtime->record_mu);
  ReconcileLocked(*vm, *runtime, context);
}

void LibvirtBackend::ReconcileAll(const std::string& context) {
  absl::StatusOr<std::vector<Vm>> vms = store_->List();
  if (!vms.ok()) return;
  for (const Vm& vm : *vms) {
    if (IsLibvirt(vm)) Reconcile(vm.uuid(), context);
  }
}

absl::Status LibvirtBackend::Reattach(const std::vector<Vm>& vms) {
  for (const Vm& vm : vms) {
    if (IsLibvirt(vm)) Reconcile(vm.uuid(), " (while vmms was down)");
  }
  return absl::OkStatus();
}

void LibvirtBackend::Shutdown(const std::string& reason) {
  if (!opened_) return;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  absl::StatusOr<std::vector<Vm>> vms = store_->List();
  if (vms.ok()) {
    for (const Vm& vm : *vms) {
      if (IsLibvirt(vm) && IsActive(vm.state())) (void)DoStop(vm, reason);
    }
  }
  if (keeper_.joinable()) keeper_.join();
  {
    absl::MutexLock lock(&mu_);
    processor_stop_ = true;
  }
  if (processor_.joinable()) processor_.join();
  {
    absl::MutexLock lock(&mu_);
    conn_.reset();
    loop_stop_ = true;
    reaper_stop_ = true;
  }
  if (event_loop_.joinable()) event_loop_.join();
  if (reaper_.joinable()) reaper_.join();
}

absl::Status LibvirtBackend::CheckHardware(const Vm& vm,
                                           const hvstack::v1::VmConfig& merged,
                                           absl::string_view what) {
  if (vm.libvirt().adopted()) {
    return absl::FailedPreconditionError(AdoptedRefusal(vm, what));
  }
  return LibvirtSupports(vm.name(), merged);
}

absl::StatusOr<hvstack::v1::ListLibvirtDomainsResponse>
LibvirtBackend::ListUnmanaged() {
  absl::StatusOr<ConnPtr> conn = Conn();
  if (!conn.ok()) return Unavailable("cannot list libvirt's domains");
  virDomainPtr* domains = nullptr;
  const int count = virConnectListAllDomains((*conn)->conn, &domains, 0);
  if (count < 0) {
    return Unavailable(
        absl::StrCat("cannot list libvirt's domains: ", LibvirtError()));
  }
  std::vector<DomainPtr> owned;
  for (int i = 0; i < count; ++i) owned.emplace_back(domains[i]);
  free(domains);
  hvstack::v1::ListLibvirtDomainsResponse response;
  for (const DomainPtr& domain : owned) {
    char uuid[VIR_UUID_STRING_BUFLEN];
    if (virDomainGetUUIDString(domain.get(), uuid) != 0) continue;
    if (store_->GetByUuid(uuid).ok()) continue;  // Managed.
    hvstack::v1::LibvirtDomainSummary* summary = response.add_domains();
    const char* name = virDomainGetName(domain.get());
    summary->set_name(name != nullptr ? name : "");
    summary->set_uuid(uuid);
    int state = 0, reason = 0;
    if (virDomainGetState(domain.get(), &state, &reason, 0) == 0) {
      summary->set_state(DescribeState(state, reason));
    }
    virDomainInfo info;
    if (virDomainGetInfo(domain.get(), &info) == 0) {
      summary->set_vcpus(info.nrVirtCpu);
      summary->set_memory_mib(info.maxMem / 1024);
    }
    summary->set_persistent(virDomainIsPersistent(domain.get()) == 1);
  }
  std::sort(response.mutable_domains()->begin(),
            response.mutable_domains()->end(),
            [](const auto& a, const auto& b) { return a.name() < b.name(); });
  return response;
}

absl::StatusOr<Vm> LibvirtBackend::AdoptionRecord(const std::string& domain,
                                                  const std::string& name) {
  if (domain.empty()) {
    return absl::InvalidArgumentError(
        "no domain given: name the libvirt domain to adopt (vmctl libvirt "
        "list shows them)");
  }
  absl::StatusOr<ConnPtr> conn = Conn();
  if (!conn.ok()) {
    return Unavailable(absl::StrCat("domain '", domain, "' cannot be adopted"));
  }
  DomainPtr found(virDomainLookupByName((*conn)->conn, domain.c_str()));
  if (found == nullptr && LibvirtErrorCode() == VIR_ERR_NO_DOMAIN) {
    found.reset(virDomainLookupByUUIDString((*conn)->conn, domain.c_str()));
  }
  if (found == nullptr) {
    const int code = LibvirtErrorCode();
    if (code != VIR_ERR_NO_DOMAIN && code != VIR_ERR_INVALID_ARG) {
      return Unavailable(absl::StrCat("domain '", domain,
                                      "' cannot be adopted: ", LibvirtError()));
    }
    return absl::NotFoundError(absl::StrCat(
        "libvirt at ", options_.uri, " has no domain '", domain,
        "' (vmctl libvirt list shows the domains vmms can adopt)"));
  }
  char uuid[VIR_UUID_STRING_BUFLEN];
  if (virDomainGetUUIDString(found.get(), uuid) != 0) {
    return absl::InternalError(absl::StrCat(
        "domain '", domain, "': libvirt gave no UUID: ", LibvirtError()));
  }
  const char* domain_name = virDomainGetName(found.get());
  const std::string real_name = domain_name != nullptr ? domain_name : domain;
  if (absl::StatusOr<Vm> managed = store_->GetByUuid(uuid); managed.ok()) {
    return absl::AlreadyExistsError(absl::StrCat(
        "domain '", real_name, "' (uuid ", uuid,
        ") is already managed by vmms as VM '", managed->name(), "'"));
  }
  if (virDomainIsPersistent(found.get()) != 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "domain '", real_name,
        "' is transient: vmms adopts defined domains only (define it first: "
        "virsh dumpxml ",
        real_name, " > d.xml && virsh define d.xml)"));
  }
  Vm vm;
  vm.set_uuid(uuid);
  vm.set_name(name.empty() ? real_name : name);
  hvstack::v1::VmConfig* config = vm.mutable_config();
  config->set_backend(hvstack::v1::BACKEND_LIBVIRT);
  virDomainInfo info;
  if (virDomainGetInfo(found.get(), &info) == 0) {
    config->set_vcpus(info.nrVirtCpu);
    config->set_memory_mib(info.maxMem / 1024);
  }
  vm.mutable_libvirt()->set_adopted(true);
  vm.mutable_libvirt()->set_domain_name(real_name);
  return vm;
}

void LibvirtBackend::Adopted(const Vm& vm) {
  Reconcile(vm.uuid(), " (adopted)");
}

void LibvirtBackend::Release(const Vm& vm) {
  std::shared_ptr<VmRuntime> runtime = RuntimeOf(vm.uuid());
  {
    absl::MutexLock record(&runtime->record_mu);
    EndConsole(*runtime);
  }
  absl::MutexLock lock(&mu_);
  runtimes_.erase(vm.uuid());
}

void LibvirtBackend::FillHostInfo(hvstack::v1::HostInfo* info) {
  info->set_libvirt_uri(options_.uri);
  absl::MutexLock lock(&mu_);
  info->set_libvirt_connected(conn_ != nullptr && !reconnect_needed_);
  info->set_libvirt_version(version_);
  info->set_libvirt_error(last_error_);
}

}  // namespace vmms
