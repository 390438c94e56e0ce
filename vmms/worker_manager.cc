#include "vmms/worker_manager.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "proto/hvstack/internal/worker.grpc.pb.h"
#include "vmms/disk_open.h"
#include "vmms/guest_crash.h"
#include "vmms/log_format.h"
#include "vmms/nic_backend.h"
#include "vmms/process_identity.h"
#include "vmms/sandbox/violation_exit.h"
#include "vmms/state_machine.h"
#include "vmms/validation.h"
#include "vmms/vmwp_locator.h"
#include "vmms/worker_exit.h"
#include "vmms/worker_files.h"
#include "vmms/worker_spawn.h"

namespace vmms {
namespace {

using hvstack::v1::VM_STATE_CRASHED;
using hvstack::v1::VM_STATE_OFF;
using hvstack::v1::VM_STATE_RUNNING;
using hvstack::v1::VM_STATE_STARTING;
using hvstack::v1::VM_STATE_STOPPING;

// After SIGKILL a process is gone as soon as the kernel tears it down; this
// only guards against a worker stuck in uninterruptible sleep (e.g. a hung
// device).
constexpr absl::Duration kKillWait = absl::Seconds(30);

// How long an ended worker's images may stay locked (AwaitImagesUnlocked:
// io_uring releases them a moment after the exit) before vmms goes on.
constexpr absl::Duration kImageReleaseWait = absl::Seconds(10);

}  // namespace

WorkerManager::WorkerManager(VmStore* store, WorkerManagerOptions options,
                             VmBackendHost* backend_host)
    : store_(store), options_(std::move(options)), host_(backend_host) {
  if (!options_.sandbox) {
    spdlog::warn(
        "vmms runs with --no-sandbox: workers run as root with no namespaces, "
        "seccomp filter or cgroup limits. A developer switch; never use it in "
        "production");
    return;
  }
  absl::StatusOr<std::unique_ptr<SandboxHost>> host = SandboxHost::Create();
  if (host.ok()) {
    sandbox_ = *std::move(host);
    // The fork server starts with vmms, so that the first start is warm too.
    if (absl::StatusOr<std::string> vmwp = LocateVmwp(options_.vmwp_flag);
        options_.zygote && vmwp.ok()) {
      absl::MutexLock lock(&mu_);
      zygote_ = std::make_unique<sandbox::ZygoteKeeper>(*vmwp);
      (void)zygote_->Start();  // on failure: logged, workers are exec'd
    }
  } else {
    sandbox_error_ = absl::FailedPreconditionError(absl::StrCat(
        "this host cannot sandbox VM workers: ", host.status().message(),
        " (run vmms as root on a host with cgroups, or use --no-sandbox for "
        "development)"));
    spdlog::error("{}", std::string(sandbox_error_.message()));
  }
}

Vm WorkerManager::WithSandboxIdentity(Vm vm) const {
  if (sandbox_ == nullptr || !vm.sandbox().enabled()) return vm;
  if (absl::StatusOr<uint32_t> slot = store_->UidSlot(vm.uuid()); slot.ok()) {
    if (std::optional<sandbox::Identity> id = sandbox_->IdentityOf(*slot)) {
      vm.mutable_sandbox()->set_uid(id->uid);
      vm.mutable_sandbox()->set_gid(id->gid);
    }
  }
  return vm;
}

Vm WorkerManager::Describe(Vm vm) { return WithSandboxIdentity(std::move(vm)); }

WorkerManager::~WorkerManager() { Shutdown("vmms shut down (hard power-off)"); }

absl::Status WorkerManager::FailLaunch(const Vm& vm, const std::string& reason,
                                       absl::Status error) {
  spdlog::error("VM {}: start failed: {}", vm.name(), error.message());
  absl::StatusOr<Vm> off = store_->SetState(vm.uuid(), VM_STATE_OFF, reason, 0);
  if (!off.ok())
    spdlog::error("VM {}: cannot record Off: {}", vm.name(),
                  off.status().message());
  return error;
}

absl::StatusOr<std::shared_ptr<WorkerManager::Worker>> WorkerManager::Launch(
    const Vm& vm, const LaunchMode& mode) {
  RuntimePaths paths = RuntimePathsFor(options_.state_dir, vm.uuid());
  if (!mode.respawn) {
    absl::StatusOr<Vm> starting = store_->SetState(
        vm.uuid(),
        mode.restore ? hvstack::v1::VM_STATE_RESTORING : VM_STATE_STARTING,
        mode.start_reason);
    if (!starting.ok()) return starting.status();
  }
  // A respawn's caller records the VM Crashed instead of Off; a restore that
  // cannot start leaves the VM Saved with its files.
  auto FailLaunch = [this, &mode](const Vm& vm, const std::string& reason,
                                  absl::Status error) {
    if (mode.respawn) return error;
    if (mode.restore) {
      spdlog::error("VM {}: restore failed: {}", vm.name(), error.message());
      absl::StatusOr<Vm> saved =
          store_->SetState(vm.uuid(), hvstack::v1::VM_STATE_SAVED,
                           absl::StrCat("restore failed: ", reason), 0);
      if (!saved.ok())
        spdlog::error("VM {}: cannot record Saved: {}", vm.name(),
                      saved.status().message());
      return error;
    }
    return this->FailLaunch(vm, reason, std::move(error));
  };

  std::error_code ec;
  std::filesystem::create_directories(paths.dir, ec);
  if (ec) {
    std::string reason = absl::StrCat("cannot create runtime directory ",
                                      paths.dir, ": ", ec.message());
    return FailLaunch(vm, reason, absl::InternalError(reason));
  }
  // Leftovers of the previous run would be mistaken for this run's.
  std::filesystem::remove(paths.exit_report, ec);
  std::filesystem::remove(paths.worker_socket, ec);
  std::filesystem::remove(paths.handoff_socket, ec);
  // A restore: the saved files, read-only (the worker maps guest memory from
  // its descriptor copy-on-write, so the file must not change: vmms never
  // writes a saved file again; the next save writes new ones).
  base::ScopedFd saved_state_fd, saved_memory_fd;
  if (mode.restore) {
    saved_state_fd.reset(
        ::open(paths.saved_state.c_str(), O_RDONLY | O_CLOEXEC));
    saved_memory_fd.reset(
        ::open(paths.saved_memory.c_str(), O_RDONLY | O_CLOEXEC));
    if (!saved_state_fd || !saved_memory_fd) {
      std::string reason =
          absl::StrCat("cannot open the saved state ",
                       !saved_state_fd ? paths.saved_state : paths.saved_memory,
                       ": ", std::strerror(errno));
      return FailLaunch(vm, reason, absl::DataLossError(reason));
    }
  }

  absl::StatusOr<std::string> vmwp = LocateVmwp(options_.vmwp_flag);
  if (!vmwp.ok()) {
    return FailLaunch(vm, std::string(vmwp.status().message()), vmwp.status());
  }

  // The TAP devices of its network adapters, created now in vmms's network
  // namespace (before the sandbox, which has more to undo); the worker inherits
  // their descriptors.
  absl::StatusOr<OpenedNics> nics = OpenNics(vm);
  if (!nics.ok()) {
    return FailLaunch(vm, std::string(nics.status().message()), nics.status());
  }

  std::optional<SandboxHost::Prepared> sandboxed;
  const absl::Time prepare_start = absl::Now();
  if (options_.sandbox) {
    if (sandbox_ == nullptr) {
      return FailLaunch(vm, std::string(sandbox_error_.message()),
                        sandbox_error_);
    }
    absl::StatusOr<SandboxHost::Prepared> prepared =
        sandbox_->Prepare(*store_, vm, paths);
    if (!prepared.ok()) {
      return FailLaunch(vm, std::string(prepared.status().message()),
                        prepared.status());
    }
    sandboxed = *std::move(prepared);
  } else {
    spdlog::warn("VM {}: starting its worker WITHOUT a sandbox (--no-sandbox)",
                 vm.name());
  }
  // Written only when it changes: each write is a SQLite commit (fsync).
  if (vm.sandbox().enabled() != sandboxed.has_value()) {
    if (absl::Status s = store_->SetSandboxed(vm.uuid(), sandboxed.has_value());
        !s.ok()) {
      spdlog::error("VM {}: cannot record its sandbox mode: {}", vm.name(),
                    std::string(s.message()));
    }
  }
  const absl::Time spawn_start = absl::Now();
  double netns_ms = 0;

  base::ScopedFd kvm(::open(options_.kvm_device.c_str(), O_RDWR | O_CLOEXEC));
  if (!kvm) {
    std::string reason = absl::StrCat(
        "cannot open ", options_.kvm_device, ": ", std::strerror(errno),
        "; is KVM available and are you in the kvm group?");
    return FailLaunch(vm, reason, absl::FailedPreconditionError(reason));
  }

  hvstack::internal::WorkerConfig config;
  config.set_vm_name(vm.name());
  config.set_vm_uuid(vm.uuid());
  config.set_vcpus(vm.config().vcpus());
  config.set_memory_mib(vm.config().memory_mib());
  config.set_kernel_path(vm.config().kernel_path());
  config.set_cmdline(vm.config().cmdline());
  config.set_initrd_path(vm.config().initrd_path());
  config.set_on_guest_crash(GuestCrashActionFor(vm.config().on_guest_crash()));
  config.set_runtime_dir(paths.dir);
  config.set_socket_path(paths.worker_socket);
  config.set_console_log_path(paths.console_log);
  config.set_exit_report_path(paths.exit_report);
  config.set_kvm_fd(kWorkerKvmFd);
  config.set_kvm_device_path(options_.kvm_device);
  if (sandboxed.has_value()) {
    hvstack::internal::SandboxConfig* sc = config.mutable_sandbox();
    sc->set_uid(sandboxed->identity.uid);
    sc->set_gid(sandboxed->identity.gid);
    sc->set_violation_fd(kWorkerViolationFd);
    sc->set_pids_max(sandboxed->limits.pids_max);
    sc->set_cgroup_joined_fd(kWorkerCgroupJoinedFd);
  } else {
    config.mutable_sandbox()->set_disabled(true);
  }
  if (mode.respawn) {
    *config.mutable_persistent() = mode.persistent;
    config.set_continue_console_log(true);
  }
  // Any running VM may be saved: its worker listens for the files.
  config.set_handoff_socket_path(paths.handoff_socket);
  if (mode.restore) {
    hvstack::internal::RestoreSource* restore = config.mutable_restore();
    restore->set_state_fd(kWorkerSavedStateFd);
    restore->set_memory_fd(kWorkerSavedMemoryFd);
    restore->set_memory_load(hvstack::internal::RestoreSource::MEMORY_LOAD_MAP);
    // The console goes on where the saved guest left it.
    config.set_continue_console_log(true);
  }
  // The Hyper-V interface and VMBus, as Hyper-V gives every VM (unless the
  // VM's definition turns them off); guests that ignore them are unaffected.
  config.set_enlightened(!vm.config().disable_enlightenments());

  // Disks (disk_open.h): vmms opens and locks each image (qemu-nbd for
  // qcow2/VHDX) and the worker inherits the descriptors.
  absl::StatusOr<std::vector<StartedDisk>> disks =
      StartDisks(vm, paths.dir, disk_holders_);
  if (!disks.ok()) {
    if (sandboxed.has_value()) sandbox_->RemoveCgroup(vm.uuid());
    return FailLaunch(vm, std::string(disks.status().message()),
                      disks.status());
  }
  InheritedFds disk_fds;
  std::vector<pid_t> nbd_pids;
  std::vector<std::pair<DiskHolders::ImageId, bool>> images;
  for (const StartedDisk& disk : *disks) {
    *config.add_disks() = disk.worker;
    disk_fds.emplace_back(disk.handover.get(), disk.worker.fd());
    if (disk.nbd_pid > 0) nbd_pids.push_back(disk.nbd_pid);
    images.emplace_back(disk.image, !disk.worker.read_only());
  }
  // On failure from here: the connections close (each qemu-nbd exits) and
  // the qemu-nbd processes are reaped.
  auto drop_disks = [&] {
    disks->clear();
    ReapNbdServers(nbd_pids, absl::Seconds(5));
  };
  // Network adapters: each TAP device at 40 + index (nic_backend.h).
  InheritedFds fds = disk_fds;
  for (const hvstack::internal::WorkerNic& nic : nics->config)
    *config.add_nics() = nic;
  for (const auto& fd : nics->InheritedFds()) fds.push_back(fd);
  if (mode.restore) {
    fds.emplace_back(saved_state_fd.get(), kWorkerSavedStateFd);
    fds.emplace_back(saved_memory_fd.get(), kWorkerSavedMemoryFd);
  }
  if (absl::Status s = WriteWorkerConfig(paths.worker_config, config);
      !s.ok()) {
    drop_disks();
    if (sandboxed.has_value()) sandbox_->RemoveCgroup(vm.uuid());
    return FailLaunch(vm, std::string(s.message()), s);
  }

  absl::StatusOr<SpawnedWorker> spawned;
  if (sandboxed.has_value()) {
    absl::StatusOr<base::ScopedFd> netns = sandbox_->TakeNetNamespace();
    if (!netns.ok()) {
      drop_disks();
      sandbox_->RemoveCgroup(vm.uuid());
      return FailLaunch(vm, std::string(netns.status().message()),
                        netns.status());
    }
    netns_ms = absl::ToDoubleMilliseconds(absl::Now() - spawn_start);
    if (options_.zygote && zygote_ == nullptr) {
      // vmwp was not found at vmms's start-up: the fork server starts with
      // the first worker.
      zygote_ = std::make_unique<sandbox::ZygoteKeeper>(*vmwp);
    }
    spawned = SpawnSandboxedWorker(*vmwp, paths.worker_config, kvm.get(),
                                   netns->get(), fds, zygote_.get());
    if (!spawned.ok()) sandbox_->RemoveCgroup(vm.uuid());
  } else {
    spawned = SpawnWorker(*vmwp, paths.worker_config, kvm.get(), fds);
  }
  if (!spawned.ok()) {
    drop_disks();
    return FailLaunch(vm, std::string(spawned.status().message()),
                      spawned.status());
  }
  // The worker holds the images now (its descriptors keep the locks); ours
  // close when `disks` goes.
  disk_holders_.Register(vm.uuid(), vm.name(), images);
  spdlog::info(
      "VM {}: worker {} started ({}{}; sandbox preparation {:.2f} ms, net "
      "namespace {:.2f} ms, spawn {:.2f} ms)",
      vm.name(), spawned->pid, *vmwp, spawned->forked ? ", forked" : "",
      absl::ToDoubleMilliseconds(spawn_start - prepare_start), netns_ms,
      absl::ToDoubleMilliseconds(absl::Now() - spawn_start) - netns_ms);

  auto worker = std::make_shared<Worker>();
  worker->uuid = vm.uuid();
  worker->name = vm.name();
  worker->paths = paths;
  worker->pid = spawned->pid;
  worker->ready_pipe = std::move(spawned->ready);
  worker->violation_pipe = std::move(spawned->violations);
  worker->cgroup_joined = std::move(spawned->cgroup_joined);
  worker->respawned = mode.respawn;
  worker->restoring = mode.restore;
  worker->nbd_pids = std::move(nbd_pids);
  worker->writable_images = WritableImagePaths(vm);
  for (StartedDisk& disk : *disks) {
    if (disk.nbd_connector != nullptr)
      worker->nbd_connectors.push_back(std::move(disk.nbd_connector));
  }
  for (const hvstack::internal::WorkerNic& nic : nics->config)
    worker->nic_indices.push_back(nic.index());
  worker->generation = next_generation_++;
  // Our unreaped child: the pid cannot be reused before we wait for it, so
  // this pidfd is certainly the worker's.
  absl::StatusOr<base::ScopedFd> pidfd = OpenPidfd(worker->pid);
  if (!pidfd.ok()) {
    ::kill(worker->pid, SIGKILL);
    while (::waitpid(worker->pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return FailLaunch(vm, std::string(pidfd.status().message()),
                      pidfd.status());
  }
  worker->pidfd = *std::move(pidfd);
  const int64_t start_ticks = ProcessStartTicks(worker->pid).value_or(0);
  if (absl::Status s =
          store_->SetWorkerPid(vm.uuid(), worker->pid, start_ticks);
      !s.ok()) {
    spdlog::error("VM {}: cannot record worker pid: {}", vm.name(),
                  s.message());
  }
  return worker;
}

void WorkerManager::Supervise(Worker* worker) {
  // The worker this one replaced: its supervisor started us and is ending.
  if (worker->predecessor != nullptr) {
    if (worker->predecessor->supervisor.joinable())
      worker->predecessor->supervisor.join();
    worker->predecessor.reset();
  }
  if (worker->cgroup_joined) {
    // While the worker starts: a v1 cgroup join waits for an RCU grace
    // period (~13 ms), which would otherwise add to every start. The worker
    // waits for the byte before its lock-down, so no guest instruction runs
    // outside its limits; without the byte (EOF) it gives up.
    if (absl::Status s = sandbox_->JoinCgroup(worker->uuid, worker->pid);
        s.ok()) {
      const char joined = 'J';
      (void)!::write(worker->cgroup_joined.get(), &joined, 1);
    } else {
      spdlog::error("VM {}: cannot put worker {} into its cgroup: {}",
                    worker->name, worker->pid, std::string(s.message()));
    }
    worker->cgroup_joined.reset();
  }
  char byte;
  ssize_t n = 1;  // A reattached worker is ready already.
  if (worker->ready_pipe) {
    do {
      n = ::read(worker->ready_pipe.get(), &byte, 1);
    } while (n < 0 && errno == EINTR);
    worker->ready_pipe.reset();
  }
  if (n == 1 && worker->is_child) {
    absl::MutexLock lock(&worker->mu);
    // A stop that arrived while Starting already recorded Stopping; Running
    // would be a lie.
    if (!worker->stop_reason.has_value()) {
      // A respawned worker continues a VM that is Running already.
      // A restored one: the saved state is used up (the worker holds what
      // it needs), in the same transaction as Running.
      absl::StatusOr<Vm> running =
          worker->respawned ? store_->GetByUuid(worker->uuid)
          : worker->restoring
              ? store_->DropSaved(worker->uuid, VM_STATE_RUNNING,
                                  "restored from its saved state")
              : store_->SetState(worker->uuid, VM_STATE_RUNNING,
                                 "worker ready");
      if (running.ok() && worker->restoring) RemoveSavedFiles(worker->paths);
      worker->ready_time = absl::Now();
      if (running.ok()) {
        worker->running_vm = *running;
      } else {
        spdlog::error("VM {}: cannot record Running: {}", worker->name,
                      running.status().message());
      }
    }
    worker->ready = true;
    spdlog::info("VM {}: worker {} ready", worker->name, worker->pid);
  }
  std::thread events;
  if (n == 1) events = std::thread([this, worker] { WatchEvents(worker); });

  // The pidfd is readable the moment the process exits, child or not.
  AwaitPidfdExit(worker->pidfd.get());
  // Every event the worker sent is recorded before its final state.
  {
    absl::MutexLock lock(&worker->events_mu);
    worker->process_gone = true;
    if (worker->events_context != nullptr) worker->events_context->TryCancel();
  }
  if (events.joinable()) events.join();
  std::optional<hvstack::internal::WorkerExitReport> report =
      ReadExitReport(worker->paths.exit_report);
  const bool exit_saved =
      report.has_value() &&
      report->reason() == hvstack::internal::WorkerExitReport::SAVED;
  // A guest crash report that ended the worker (its event may not have
  // reached us): recorded before the state it leads to.
  if (report.has_value() && report->has_guest_crash())
    RecordGuestCrash(*worker, report->guest_crash());

  int wait_status = 0;
  if (worker->is_child) {
    // Signals go through the pidfd, so reaping outside worker->mu is safe.
    while (::waitpid(worker->pid, &wait_status, 0) < 0 && errno == EINTR) {
    }
  }
  // Its disks: each qemu-nbd flushes and exits now that the worker's
  // connection is closed (before a respawn opens the images again), and the
  // images are nobody's.
  worker->nbd_connectors.clear();
  ReapNbdServers(worker->nbd_pids, absl::Seconds(5));
  {
    const absl::Time since = absl::Now();
    const std::vector<std::string> held =
        AwaitImagesUnlocked(worker->writable_images, kImageReleaseWait);
    if (!held.empty()) {
      spdlog::warn("VM {}: {} still locked {} after worker {} ended",
                   worker->name, absl::StrJoin(held, ", "),
                   absl::FormatDuration(kImageReleaseWait), worker->pid);
    } else if (absl::Now() - since > absl::Milliseconds(100)) {
      spdlog::info("VM {}: its images were released {} after worker {} ended",
                   worker->name, absl::FormatDuration(absl::Now() - since),
                   worker->pid);
    }
  }
  disk_holders_.Release(worker->uuid);

  // A sandboxed worker killed by SIGSYS: which call it tried (the reporter's
  // record), and whether its cgroup ran out of memory. Then the cgroup goes.
  std::optional<std::string> sandbox_end;
  if (worker->is_child && worker->violation_pipe) {
    sandbox_end = sandbox::DescribeSandboxExit(
        wait_status, DrainViolationPipe(worker->violation_pipe.get()));
  }
  if (sandbox_ != nullptr) {
    if (!sandbox_end.has_value() && !report.has_value())
      sandbox_end = sandbox_->OutOfMemory(worker->uuid);
    sandbox_->RemoveCgroup(worker->uuid);
  }
  if (sandbox_end.has_value()) report.reset();
  // The kernel removed its TAP devices when its descriptors closed; this
  // only sweeps up a device that outlived it, before a respawn makes new
  // ones of the same names.
  if (!worker->nic_indices.empty())
    RemoveNicDevices(worker->name, worker->uuid, worker->nic_indices);

  std::optional<std::string> respawn_error;
  bool reset = false;
  {
    absl::MutexLock lock(&worker->mu);
    reset = worker->reset_reason.has_value();
  }
  if (reset || (report.has_value() &&
                report->reason() ==
                    hvstack::internal::WorkerExitReport::REBOOT_REQUESTED)) {
    // Lock order: mu_ before a worker's mu (as Stop and Start take them).
    absl::MutexLock manager_lock(&mu_);
    absl::MutexLock lock(&worker->mu);
    if (!worker->stop_reason.has_value() && worker->ready && !shutting_down_) {
      // A hard reset is a power cycle: no device state carries over.
      absl::Status s =
          reset ? RespawnWorker(worker, *worker->reset_reason,
                                hvstack::internal::PersistentDeviceState())
                : RespawnWorker(worker, report->detail(), report->persistent());
      if (s.ok()) {
        worker->exited = true;
        return;
      }
      respawn_error = std::string(s.message());
    }
  }

  absl::ReleasableMutexLock lock(&worker->mu);
  WorkerOutcome outcome;
  if (respawn_error.has_value()) {
    outcome = {VM_STATE_CRASHED, *respawn_error, absl::OkStatus()};
  } else if (sandbox_end.has_value() && !worker->stop_reason.has_value()) {
    // The sandbox (or its cgroup) ended the worker: the guest's doing or a
    // compromised/buggy worker, never the user's.
    if (worker->ready) {
      outcome = {VM_STATE_CRASHED, *sandbox_end, absl::OkStatus()};
    } else {
      std::string reason =
          absl::StrCat("worker failed to start: ", *sandbox_end);
      outcome = {VM_STATE_OFF, reason, absl::InternalError(reason)};
    }
  } else if (worker->is_child) {
    outcome = ClassifyWorkerExit(report, wait_status, worker->ready,
                                 worker->stop_reason);
  } else {
    outcome =
        ClassifyAdoptedWorkerExit(report, worker->pid, worker->stop_reason);
  }
  if (worker->respawned && !worker->ready && !worker->stop_reason.has_value()) {
    // The VM was Running: a replacement that cannot start crashes it.
    outcome = {
        VM_STATE_CRASHED,
        absl::StrCat("cannot restart after a guest reboot: ", outcome.reason),
        absl::OkStatus()};
  }
  if (worker->restoring && !worker->ready) {
    // The saved state is still there: the VM stays Saved.
    outcome.state = hvstack::v1::VM_STATE_SAVED;
    outcome.reason = absl::StrCat("restore failed: ", outcome.reason);
    if (outcome.start_error.ok())
      outcome.start_error = absl::InternalError(outcome.reason);
  }
  if (worker->saving) {
    // Save() records what the end of this worker means.
    spdlog::info("VM {}: worker {} ended during its save ({})", worker->name,
                 worker->pid, exit_saved ? "saved" : outcome.reason);
    worker->save_outcome = outcome;
    worker->exit_saved = exit_saved;
    worker->exited = true;
    return;
  }
  spdlog::info("VM {}: worker {} ended ({}): {} \"{}\"", worker->name,
               worker->pid,
               worker->is_child ? DescribeWaitStatus(wait_status)
                                : "not our child: no wait status",
               StateName(outcome.state), outcome.reason);
  absl::StatusOr<Vm> final_vm =
      store_->SetState(worker->uuid, outcome.state, outcome.reason, 0);
  if (!final_vm.ok()) {
    spdlog::error("VM {}: cannot record {}: {}", worker->name,
                  StateName(outcome.state), final_vm.status().message());
  }
  if (!worker->ready) worker->start_error = outcome.start_error;
  worker->exited = true;
  lock.Release();
  // Not under worker->mu: the restart machinery may take mu_, which is
  // always taken before a worker's mu.
  if (final_vm.ok()) ReportEnd(worker, *final_vm);
}

void WorkerManager::ReportEnd(Worker* worker, const Vm& final_vm) {
  if (host_ == nullptr) return;
  absl::Time ready_time;
  {
    absl::MutexLock lock(&worker->mu);
    // What a client asked for is never undone; a start that failed is the
    // start's error, not a crash to retry.
    if (worker->stop_reason.has_value() || worker->shutdown_requested ||
        !worker->ready) {
      return;
    }
    ready_time = worker->ready_time;
  }
  host_->VmEndedOnItsOwn(final_vm, ready_time);
}

absl::Status WorkerManager::RespawnWorker(
    Worker* old, const std::string& reason,
    const hvstack::internal::PersistentDeviceState& persistent) {
  if (!old->reboot_guard->Record(absl::Now())) {
    std::string why = absl::StrCat(
        "guest crashed: reboot loop: ", old->reboot_guard->Describe(),
        "; last: ", reason);
    spdlog::error("VM {}: {}", old->name, why);
    return absl::ResourceExhaustedError(why);
  }
  absl::StatusOr<Vm> vm = store_->RecordReboot(
      old->uuid, reason.empty() ? "guest rebooted"
                                : absl::StrCat("guest rebooted: ", reason));
  if (!vm.ok()) return vm.status();
  spdlog::info("VM {}: guest reboot {} ({}); starting a fresh worker",
               old->name, vm->reboot_count(), reason);
  absl::StatusOr<std::shared_ptr<Worker>> fresh =
      Launch(*vm, LaunchMode{.respawn = true, .persistent = persistent});
  if (!fresh.ok()) {
    return absl::Status(fresh.status().code(),
                        absl::StrCat("cannot restart after a guest reboot: ",
                                     fresh.status().message()));
  }
  (*fresh)->reboot_guard = old->reboot_guard;
  auto it = workers_.find(old->uuid);
  if (it != workers_.end() && it->second.get() == old) {
    (*fresh)->predecessor = std::move(it->second);
  }
  workers_[old->uuid] = *fresh;
  (*fresh)->supervisor =
      std::thread([this, w = fresh->get()] { Supervise(w); });
  return absl::OkStatus();
}

void WorkerManager::WatchEvents(Worker* worker) {
  constexpr int kMaxAttempts = 5;
  uint64_t last_sequence = 0;
  for (int failures = 0; failures < kMaxAttempts;) {
    auto channel = grpc::CreateChannel("unix:" + worker->paths.worker_socket,
                                       grpc::InsecureChannelCredentials());
    auto stub = hvstack::internal::WorkerService::NewStub(channel);
    grpc::ClientContext context;
    {
      absl::MutexLock lock(&worker->events_mu);
      if (worker->process_gone) return;
      worker->events_context = &context;
    }
    hvstack::internal::WatchEventsRequest request;
    request.set_after_sequence(last_sequence);
    auto reader = stub->WatchEvents(&context, request);
    hvstack::internal::WorkerEvent event;
    while (reader->Read(&event)) {
      last_sequence = event.sequence();
      failures = 0;
      HandleWorkerEvent(*worker, event);
    }
    grpc::Status status = reader->Finish();
    {
      absl::MutexLock lock(&worker->events_mu);
      worker->events_context = nullptr;
      if (worker->process_gone) return;
    }
    // The worker ends its event stream when it is about to exit.
    if (status.ok()) return;
    if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      spdlog::warn(
          "VM {}: worker {} has no event stream; reboots are not "
          "recorded",
          worker->name, worker->pid);
      return;
    }
    ++failures;
    spdlog::warn("VM {}: worker events: {} (attempt {} of {})", worker->name,
                 status.error_message(), failures, kMaxAttempts);
    // A broken stream usually means the worker just died: the backoff ends
    // as soon as the supervisor says so, so that it never waits on us.
    absl::MutexLock lock(&worker->events_mu);
    worker->events_mu.AwaitWithTimeout(absl::Condition(&worker->process_gone),
                                       absl::Milliseconds(100) * failures);
    if (worker->process_gone) return;
  }
}

void WorkerManager::HandleWorkerEvent(
    Worker& worker, const hvstack::internal::WorkerEvent& event) {
  switch (event.kind_case()) {
    case hvstack::internal::WorkerEvent::kHeartbeat: {
      {
        absl::MutexLock lock(&worker.events_mu);
        if (event.sequence() <= worker.guest_events_recorded) break;
        worker.guest_events_recorded = event.sequence();
      }
      const bool ok = event.heartbeat().state() ==
                      hvstack::internal::GuestIntegration::HEARTBEAT_OK;
      const std::string reason =
          ok ? absl::StrCat("heartbeat OK (seq ", event.heartbeat().sequence(),
                            ")")
             : absl::StrCat("heartbeat lost (last seq ",
                            event.heartbeat().sequence(), ")");
      spdlog::info("VM {}: guest {}", worker.name, reason);
      if (absl::Status s = store_->RecordGuestEvent(
              worker.uuid, hvstack::v1::VmEvent::KIND_GUEST_HEARTBEAT, reason);
          !s.ok()) {
        spdlog::warn("VM {}: cannot record the heartbeat event: {}",
                     worker.name, s.ToString());
      }
      break;
    }
    case hvstack::internal::WorkerEvent::kGuestCrashed: {
      {
        absl::MutexLock lock(&worker.events_mu);
        if (event.sequence() <= worker.guest_events_recorded) break;
        worker.guest_events_recorded = event.sequence();
      }
      RecordGuestCrash(worker, event.guest_crashed());
      break;
    }
    default:
      // A kind this vmms does not know yet (a newer worker): skip it.
      break;
  }
}

void WorkerManager::RecordGuestCrash(
    Worker& worker, const hvstack::internal::GuestCrashReport& report) {
  const hvstack::v1::GuestCrash crash = ToPublicGuestCrash(report);
  const std::optional<VmState> next = StateAfterGuestCrash(report);
  absl::StatusOr<bool> recorded = store_->RecordGuestCrash(
      worker.uuid, crash, next, GuestCrashReason(crash));
  if (!recorded.ok()) {
    spdlog::warn("VM {}: cannot record the guest's crash report: {}",
                 worker.name, recorded.status().ToString());
  } else if (*recorded) {
    spdlog::warn("VM {}: guest crashed on vp{}: {}{}", worker.name, crash.vp(),
                 crash.summary(), next.has_value() ? " (VM paused)" : "");
  }
}

absl::StatusOr<Vm> WorkerManager::Start(const Vm& vm_as_asked,
                                        const std::string& reason) {
  const std::string& name = vm_as_asked.name();
  std::shared_ptr<Worker> worker;
  std::shared_ptr<Worker> previous;
  absl::Status launch_error;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return absl::UnavailableError("vmms is shutting down");
    absl::StatusOr<Vm> vm = store_->Get(name);
    if (!vm.ok()) return vm.status();
    if (absl::Status s = CheckRequest(*vm, VmRequest::kStart); !s.ok())
      return s;
    // The kernel and initrd were checked at creation, but files change; say
    // so before touching anything. A missing or unreadable initrd is
    // INVALID_ARGUMENT naming the path; a kernel that no longer loads is
    // FAILED_PRECONDITION.
    // A Saved VM is restored (issue 14): its kernel is in its saved memory.
    const bool restore = vm->state() == hvstack::v1::VM_STATE_SAVED;
    if (absl::Status s =
            restore ? absl::OkStatus() : ValidateInitrd(vm->config());
        !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("VM '", name, "' cannot start: ", s.message()));
    }
    if (absl::Status s =
            restore ? absl::OkStatus() : ValidateVmConfig(vm->config());
        !s.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("VM '", name, "' cannot start: ", s.message()));
    }
    if (auto it = workers_.find(vm->uuid()); it != workers_.end()) {
      previous = std::move(it->second);
      workers_.erase(it);
    }
    absl::StatusOr<std::shared_ptr<Worker>> launched = Launch(
        *vm,
        LaunchMode{.restore = restore,
                   .start_reason =
                       restore ? absl::StrCat("restore requested") : reason});
    if (!launched.ok()) {
      launch_error = launched.status();
    } else {
      worker = *launched;
      // A new run of the VM: reboots are counted afresh.
      worker->reboot_guard = std::make_shared<RebootGuard>(
          RebootGuard::kDefaultMaxReboots, RebootGuard::kDefaultWindow);
      workers_[worker->uuid] = worker;
      worker->supervisor =
          std::thread([this, w = worker.get()] { Supervise(w); });
    }
  }
  // The previous run's supervisor has recorded its outcome (the VM was
  // Off/Crashed); it is finishing or finished. Joined on every path: a
  // launch that failed must not destroy a joinable thread.
  if (previous != nullptr && previous->supervisor.joinable())
    previous->supervisor.join();
  if (!launch_error.ok()) return launch_error;

  absl::MutexLock lock(&worker->mu);
  if (!worker->mu.AwaitWithTimeout(
          absl::Condition(worker.get(), &Worker::ReadyOrExited),
          options_.start_timeout)) {
    std::string reason =
        absl::StrCat("worker did not become ready within ",
                     absl::FormatDuration(options_.start_timeout));
    if (!worker->stop_reason.has_value()) worker->stop_reason = reason;
    SignalPidfd(worker->pidfd.get(), SIGKILL);
    worker->mu.AwaitWithTimeout(absl::Condition(worker.get(), &Worker::Exited),
                                kKillWait);
    return absl::DeadlineExceededError(
        absl::StrCat("VM '", name, "': ", reason));
  }
  if (worker->ready && !worker->stop_reason.has_value())
    return worker->running_vm;
  if (!worker->start_error.ok()) {
    return absl::Status(
        worker->start_error.code(),
        absl::StrCat("VM '", name, "': ", worker->start_error.message()));
  }
  return absl::AbortedError(
      absl::StrCat("VM '", name, "' was stopped while starting"));
}

absl::Status WorkerManager::StopWorker(Worker* worker,
                                       const std::string& reason) {
  absl::MutexLock lock(&worker->mu);
  if (worker->exited) return absl::OkStatus();
  if (!worker->stop_reason.has_value()) {
    worker->stop_reason = reason;
    absl::StatusOr<Vm> stopping =
        store_->SetState(worker->uuid, VM_STATE_STOPPING, "stop requested");
    if (!stopping.ok()) {
      spdlog::error("VM {}: cannot record Stopping: {}", worker->name,
                    stopping.status().message());
    }
  }
  // A hard power-off cuts the power: the kernel ends the worker at once and
  // its VM's teardown is all the wait (the guest is not asked, and a worker
  // that would be asked could be hung or slow). Everything the worker wrote
  // is in the console log already; its console followers get their end from
  // vmms when the supervisor has recorded Off. Through the pidfd: never
  // another process, even after a reap.
  SignalPidfd(worker->pidfd.get(), SIGKILL);
  if (!worker->mu.AwaitWithTimeout(absl::Condition(worker, &Worker::Exited),
                                   kKillWait)) {
    return absl::DeadlineExceededError(
        absl::StrCat("VM '", worker->name, "': worker ", worker->pid,
                     " did not die after SIGKILL"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Vm> WorkerManager::Stop(const Vm& vm_as_asked,
                                       const std::string& reason) {
  const std::string& name = vm_as_asked.name();
  std::shared_ptr<Worker> stopped;
  // A guest reboot may replace the worker while we stop it (RespawnWorker):
  // then the fresh one is stopped too. Each round either ends the VM or finds
  // a newer worker.
  for (int round = 0;; ++round) {
    std::shared_ptr<Worker> worker;
    {
      absl::MutexLock lock(&mu_);
      absl::StatusOr<Vm> vm = store_->Get(name);
      if (!vm.ok()) return vm.status();
      if (auto it = workers_.find(vm->uuid()); it != workers_.end())
        worker = it->second;
      bool live = false;
      if (worker != nullptr) {
        absl::MutexLock worker_lock(&worker->mu);
        live = !worker->exited;
      }
      if (!live || worker == stopped) {
        if (stopped != nullptr) return store_->GetByUuid(vm->uuid());
        if (absl::Status s = CheckRequest(*vm, VmRequest::kStop); !s.ok())
          return s;
        // Recorded as active with no worker of ours: nothing to stop, only
        // the record to fix.
        return store_->SetState(vm->uuid(), VM_STATE_OFF, reason, 0);
      }
    }
    if (absl::Status s = StopWorker(worker.get(), reason); !s.ok()) return s;
    stopped = worker;
  }
}

absl::Status WorkerManager::Forget(const Vm& vm) {
  std::shared_ptr<Worker> finished;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = workers_.find(vm.uuid()); it != workers_.end()) {
      finished = std::move(it->second);
      workers_.erase(it);
    }
  }
  // Off or Crashed: its supervisor has recorded the outcome and is ending.
  if (finished != nullptr && finished->supervisor.joinable())
    finished->supervisor.join();
  return absl::OkStatus();
}

absl::StatusOr<ConsoleSource> WorkerManager::Console(const Vm& vm) {
  absl::MutexLock lock(&mu_);
  RuntimePaths paths = RuntimePathsFor(options_.state_dir, vm.uuid());
  ConsoleSource source{std::nullopt, paths.console_log};
  if (auto it = workers_.find(vm.uuid()); it != workers_.end()) {
    absl::MutexLock worker_lock(&it->second->mu);
    if (it->second->ready && !it->second->exited) {
      source.worker_socket = paths.worker_socket;
      source.worker_generation = it->second->generation;
    }
  }
  return source;
}

std::optional<ConsoleSource> WorkerManager::NextConsole(
    const Vm& vm, uint64_t generation, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    {
      absl::MutexLock lock(&mu_);
      auto it = workers_.find(vm.uuid());
      if (it == workers_.end()) return std::nullopt;
      Worker& worker = *it->second;
      absl::MutexLock worker_lock(&worker.mu);
      // RespawnWorker swaps the new worker in before the old one counts as
      // exited, so an exited current worker means the VM ended.
      if (worker.exited) return std::nullopt;
      if (worker.generation != generation && worker.ready) {
        RuntimePaths paths = RuntimePathsFor(options_.state_dir, vm.uuid());
        return ConsoleSource{paths.worker_socket, paths.console_log,
                             worker.generation};
      }
    }
    // The old worker is still being reaped, or the new one is starting.
    absl::SleepFor(absl::Milliseconds(10));
  }
  return std::nullopt;
}

void WorkerManager::Shutdown(const std::string& reason) {
  std::vector<std::shared_ptr<Worker>> workers;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (auto& [uuid, worker] : workers_) workers.push_back(worker);
    workers_.clear();
  }
  for (auto& worker : workers) {
    if (absl::Status s = StopWorker(worker.get(), reason); !s.ok()) {
      spdlog::error("{}", s.message());
    }
  }
  for (auto& worker : workers) {
    if (worker->supervisor.joinable()) worker->supervisor.join();
  }
}

}  // namespace vmms
