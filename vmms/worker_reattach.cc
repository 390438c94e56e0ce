// WorkerManager::Reattach: taking over the workers of a previous vmms.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proto/hvstack/internal/worker.grpc.pb.h"
#include "vmms/disk_open.h"
#include "vmms/log_format.h"
#include "vmms/nic_backend.h"
#include "vmms/process_identity.h"
#include "vmms/worker_exit.h"
#include "vmms/worker_files.h"
#include "vmms/worker_manager.h"

namespace vmms {
namespace {

using hvstack::v1::VM_STATE_CRASHED;
using hvstack::v1::VM_STATE_OFF;
using hvstack::v1::VM_STATE_PAUSED;
using hvstack::v1::VM_STATE_RUNNING;
using hvstack::v1::VM_STATE_STARTING;
using hvstack::v1::VM_STATE_STOPPING;

constexpr absl::Duration kStatusDeadline = absl::Seconds(2);
constexpr absl::Duration kStartingGrace = absl::Seconds(5);

// GetStatus on the worker's socket.
absl::StatusOr<hvstack::internal::WorkerStatus> QueryWorker(
    const std::string& socket_path) {
  auto channel = grpc::CreateChannel("unix:" + socket_path,
                                     grpc::InsecureChannelCredentials());
  auto stub = hvstack::internal::WorkerService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kStatusDeadline));
  hvstack::internal::WorkerStatus status;
  grpc::Status rpc =
      stub->GetStatus(&context, hvstack::internal::GetStatusRequest(), &status);
  if (!rpc.ok()) {
    return absl::UnavailableError(
        absl::StrCat("GetStatus on ", socket_path, ": ", rpc.error_message()));
  }
  return status;
}

// Processes whose command line has `--config=<config_path>`: workers of this
// VM that an earlier vmms spawned but never recorded (it died between the
// spawn and recording the pid).
std::vector<pid_t> FindWorkersByConfig(const std::string& config_path) {
  const std::string wanted = absl::StrCat("--config=", config_path);
  std::vector<pid_t> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid) || pid <= 0)
      continue;
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::string arg;
    while (std::getline(in, arg, '\0')) {
      if (arg == wanted) {
        found.push_back(pid);
        break;
      }
    }
  }
  return found;
}

// Ends every unrecorded worker of a VM whose start vmms never finished, so
// that no orphan runs a VM recorded Off.
void KillUnrecordedWorkers(const Vm& vm, const std::string& config_path) {
  for (pid_t pid : FindWorkersByConfig(config_path)) {
    absl::StatusOr<base::ScopedFd> pidfd = OpenPidfd(pid);
    if (!pidfd.ok()) continue;  // gone already
    spdlog::warn(
        "VM {}: killing worker {}: its start was interrupted by a vmms "
        "restart",
        vm.name(), pid);
    SignalPidfd(pidfd->get(), SIGKILL);
    AwaitPidfdExit(pidfd->get());
  }
}

bool IsActive(const Vm& vm) {
  return vm.state() == VM_STATE_STARTING || vm.state() == VM_STATE_RUNNING ||
         vm.state() == VM_STATE_PAUSED || vm.state() == VM_STATE_STOPPING;
}

}  // namespace

absl::Status WorkerManager::Reattach(const std::vector<Vm>& vms) {
  std::vector<std::shared_ptr<Worker>> stopping;
  {
    absl::MutexLock lock(&mu_);
    for (const Vm& vm : vms) {
      // Another backend's.
      if (vm.config().backend() == hvstack::v1::BACKEND_LIBVIRT) continue;
      const RuntimePaths paths = RuntimePathsFor(options_.state_dir, vm.uuid());
      if (vm.state() == hvstack::v1::VM_STATE_SAVING ||
          vm.state() == hvstack::v1::VM_STATE_RESTORING) {
        // Issue 14: vmms stopped during a save or a restore. Neither is
        // resumed: the worker goes; a save leaves nothing (its files were
        // never recorded), a restore leaves the VM Saved with its files.
        KillUnrecordedWorkers(vm, paths.worker_config);
        if (vm.worker_pid() > 0) {
          if (absl::StatusOr<base::ScopedFd> pidfd =
                  OpenPidfd(static_cast<pid_t>(vm.worker_pid()));
              pidfd.ok() &&
              ProcessStartTicks(static_cast<pid_t>(vm.worker_pid())) ==
                  store_->WorkerStartTicks(vm.uuid()).value_or(-1)) {
            SignalPidfd(pidfd->get(), SIGKILL);
            AwaitPidfdExit(pidfd->get());
          }
        }
        const bool saving = vm.state() == hvstack::v1::VM_STATE_SAVING;
        if (saving) RemoveSavedFiles(paths);
        absl::StatusOr<Vm> updated =
            saving ? store_->SetState(vm.uuid(), VM_STATE_CRASHED,
                                      "save interrupted: vmms stopped during "
                                      "the save; nothing was saved",
                                      0)
                   : store_->SetState(vm.uuid(), hvstack::v1::VM_STATE_SAVED,
                                      "restore interrupted: vmms stopped "
                                      "during the restore",
                                      0);
        if (!updated.ok()) return updated.status();
        spdlog::warn("VM {}: {}", vm.name(), updated->state_reason());
        if (sandbox_ != nullptr) sandbox_->RemoveCgroup(vm.uuid());
        continue;
      }
      if (vm.state() != hvstack::v1::VM_STATE_SAVED) {
        // Saved files of a VM that is not Saved: left by a crash between a
        // restore's Running and their removal, or a save never recorded.
        std::error_code ec;
        if (std::filesystem::exists(paths.saved_dir, ec))
          RemoveSavedFiles(paths);
      }
      if (!IsActive(vm)) {
        // A cgroup left by a worker that ended while vmms was down.
        if (sandbox_ != nullptr) sandbox_->RemoveCgroup(vm.uuid());
        continue;
      }
      if (absl::Status s = ReattachVm(vm); !s.ok()) return s;
      if (vm.state() == VM_STATE_STOPPING) {
        if (auto it = workers_.find(vm.uuid()); it != workers_.end())
          stopping.push_back(it->second);
      }
    }
    // TAP devices of VMs without a live worker (normally gone with their
    // worker's descriptors; this catches anything that outlived it).
    ReconcileNicDevices(vms, [this](const std::string& uuid) {
      mu_.AssertHeld();
      auto it = workers_.find(uuid);
      if (it == workers_.end()) return false;
      absl::MutexLock worker_lock(&it->second->mu);
      return !it->second->exited;
    });
  }
  // The previous vmms was stopping these: finish the job.
  for (const std::shared_ptr<Worker>& worker : stopping) {
    if (absl::Status s = StopWorker(worker.get(),
                                    "stopped by user (hard "
                                    "power-off)");
        !s.ok()) {
      spdlog::error("{}", s.message());
    }
  }
  return absl::OkStatus();
}

absl::Status WorkerManager::ReattachVm(const Vm& vm) {
  const RuntimePaths paths = RuntimePathsFor(options_.state_dir, vm.uuid());
  const auto pid = static_cast<pid_t>(vm.worker_pid());
  absl::StatusOr<int64_t> recorded_ticks = store_->WorkerStartTicks(vm.uuid());
  if (!recorded_ticks.ok()) return recorded_ticks.status();

  // Same pid and same start time: the process we spawned. The start time is
  // checked again once the pidfd is open, which pins the process.
  base::ScopedFd pidfd;
  if (pid > 0 && *recorded_ticks != 0 &&
      ProcessStartTicks(pid) == *recorded_ticks) {
    absl::StatusOr<base::ScopedFd> fd = OpenPidfd(pid);
    if (fd.ok() && ProcessStartTicks(pid) == *recorded_ticks)
      pidfd = *std::move(fd);
  }

  absl::StatusOr<hvstack::internal::WorkerStatus> status =
      absl::UnavailableError("no worker");
  if (pidfd) {
    status = QueryWorker(paths.worker_socket);
    // A worker that was still composing its VM when vmms died serves its
    // socket only once ready: give it a little while.
    for (absl::Time deadline = absl::Now() + kStartingGrace;
         !status.ok() && vm.state() == VM_STATE_STARTING &&
         absl::Now() < deadline && ProcessStartTicks(pid) == *recorded_ticks;) {
      absl::SleepFor(absl::Milliseconds(100));
      status = QueryWorker(paths.worker_socket);
    }
    // A starting worker that ended meanwhile (a sandboxed one gives up when
    // vmms never confirmed its cgroup) is gone, not hung.
    if (!status.ok() && ProcessStartTicks(pid) != *recorded_ticks)
      pidfd.reset();
  }
  if (pidfd) {
    if (status.ok() && status->vm_uuid() == vm.uuid()) {
      auto worker = std::make_shared<Worker>();
      worker->uuid = vm.uuid();
      worker->name = vm.name();
      worker->paths = paths;
      worker->pid = pid;
      worker->pidfd = std::move(pidfd);
      worker->is_child = false;
      worker->writable_images = WritableImagePaths(vm);
      for (const hvstack::v1::NicConfig& nic : vm.config().nics())
        worker->nic_indices.push_back(nic.index());
      worker->generation = next_generation_++;
      worker->reboot_guard = std::make_shared<RebootGuard>(
          RebootGuard::kDefaultMaxReboots, RebootGuard::kDefaultWindow);
      Vm running = vm;
      if (vm.state() == VM_STATE_STARTING) {
        // It answers on its socket, so it was ready.
        absl::StatusOr<Vm> updated =
            store_->SetState(vm.uuid(), VM_STATE_RUNNING,
                             "worker ready (reattached after vmms restart)");
        if (!updated.ok()) return updated.status();
        running = *updated;
      } else if (vm.state() == VM_STATE_RUNNING && status->paused()) {
        // vmms died between the worker's Pause and recording it.
        absl::StatusOr<Vm> updated = store_->SetState(
            vm.uuid(), VM_STATE_PAUSED,
            "paused by user (found paused after vmms restart)");
        if (!updated.ok()) return updated.status();
        running = *updated;
      } else if (vm.state() == VM_STATE_PAUSED && !status->paused()) {
        absl::StatusOr<Vm> updated = store_->SetState(
            vm.uuid(), VM_STATE_RUNNING,
            "resumed by user (found running after vmms restart)");
        if (!updated.ok()) return updated.status();
        running = *updated;
      }
      {
        absl::MutexLock worker_lock(&worker->mu);
        worker->ready = true;
        worker->running_vm = running;
        if (vm.state() == VM_STATE_STOPPING)
          worker->stop_reason = "stopped by user (hard power-off)";
      }
      workers_[worker->uuid] = worker;
      // Its disks are held by its descriptors; who holds them is ours to
      // know again. (Its qemu-nbd processes belong to the previous vmms and
      // end with the worker's connections.)
      std::vector<std::pair<DiskHolders::ImageId, bool>> images;
      for (const hvstack::v1::Disk& disk : vm.config().disks()) {
        struct stat st;
        if (::stat(disk.path().c_str(), &st) == 0)
          images.emplace_back(DiskHolders::ImageId{st.st_dev, st.st_ino},
                              !disk.read_only());
      }
      disk_holders_.Register(vm.uuid(), vm.name(), images);
      worker->supervisor =
          std::thread([this, w = worker.get()] { Supervise(w); });
      spdlog::info("VM {}: reattached to worker {} ({})", vm.name(), pid,
                   StateName(vm.state()));
      return absl::OkStatus();
    }
    // Our worker by pid and start time, but not answering for this VM: hung.
    std::string why =
        status.ok() ? absl::StrCat("answered for VM uuid ", status->vm_uuid())
                    : std::string(status.status().message());
    spdlog::warn(
        "VM {}: worker {} does not answer after vmms restart ({}); "
        "killing it",
        vm.name(), pid, why);
    SignalPidfd(pidfd.get(), SIGKILL);
    AwaitPidfdExit(pidfd.get());
    absl::StatusOr<Vm> crashed = store_->SetState(
        vm.uuid(), VM_STATE_CRASHED,
        absl::StrCat("worker ", pid,
                     " did not answer after vmms restarted; killed (", why,
                     ")"),
        0);
    return crashed.status();
  }

  // Gone while vmms was down (or the pid now belongs to another process).
  std::optional<hvstack::internal::WorkerExitReport> report =
      ReadExitReport(paths.exit_report);
  absl::StatusOr<Vm> updated;
  if (vm.state() == VM_STATE_STARTING &&
      (!report.has_value() ||
       report->reason() == hvstack::internal::WorkerExitReport::WORKER_ERROR)) {
    // vmms died before this start finished: as StartVm promises for a start
    // that fails, the VM is left Off with the reason. A worker spawned but
    // not yet recorded must not run on behind that record.
    KillUnrecordedWorkers(vm, paths.worker_config);
    std::string reason =
        "start interrupted: vmms stopped before the worker was ready";
    if (report.has_value() && !report->detail().empty())
      absl::StrAppend(&reason, " (worker: ", report->detail(), ")");
    updated = store_->SetState(vm.uuid(), VM_STATE_OFF, reason, 0);
  } else if (vm.state() == VM_STATE_STOPPING && !report.has_value()) {
    // The previous vmms was stopping it (a hard power-off) and it is gone.
    updated = store_->SetState(vm.uuid(), VM_STATE_OFF,
                               "stopped by user (hard power-off)", 0);
  } else if (report.has_value()) {
    WorkerOutcome outcome =
        ClassifyAdoptedWorkerExit(report, pid, std::nullopt);
    updated = store_->SetState(
        vm.uuid(), outcome.state,
        absl::StrCat(outcome.reason, " (while vmms was down)"), 0);
  } else {
    updated = store_->SetState(vm.uuid(), VM_STATE_CRASHED,
                               "worker exited while vmms was down", 0);
  }
  if (updated.ok()) {
    spdlog::warn("VM {}: worker {} ended while vmms was down: {} \"{}\"",
                 vm.name(), pid, StateName(updated->state()),
                 updated->state_reason());
  }
  return updated.status();
}

}  // namespace vmms
