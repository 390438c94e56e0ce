// WorkerManager's lifecycle operations beyond start/stop/delete: pause,
// resume, reset, reboot, graceful shutdown.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proto/hvstack/internal/worker.grpc.pb.h"
#include "vmms/guest_crash.h"
#include "vmms/process_identity.h"
#include "vmms/state_machine.h"
#include "vmms/worker_client.h"
#include "vmms/worker_manager.h"

namespace vmms {
namespace {

using hvstack::internal::WorkerService;
using hvstack::v1::VM_STATE_PAUSED;
using hvstack::v1::VM_STATE_RUNNING;

// Pausing waits for the VP threads to leave KVM_RUN: milliseconds.
constexpr absl::Duration kPauseRpcTimeout = absl::Seconds(10);
constexpr absl::Duration kWorkerRpcTimeout = absl::Seconds(2);

absl::Status Annotate(const std::string& vm, absl::string_view what,
                      const absl::Status& s) {
  return absl::Status(s.code(),
                      absl::StrCat("VM '", vm, "': ", what, ": ", s.message()));
}

}  // namespace

absl::StatusOr<std::shared_ptr<WorkerManager::Worker>>
WorkerManager::ReadyWorker(const Vm& vm) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(vm.uuid());
  if (it != workers_.end()) {
    absl::MutexLock worker_lock(&it->second->mu);
    if (it->second->ready && !it->second->exited &&
        !it->second->stop_reason.has_value()) {
      return it->second;
    }
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "VM '", vm.name(), "' has no running worker (it is ending); retry"));
}

std::optional<WorkerManager::LiveWorker> WorkerManager::Live(
    const std::string& uuid) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(uuid);
  if (it == workers_.end()) return std::nullopt;
  absl::MutexLock worker_lock(&it->second->mu);
  if (!it->second->ready || it->second->exited) return std::nullopt;
  return LiveWorker{it->second->paths.worker_socket, it->second->pid,
                    it->second->ready_time};
}

absl::StatusOr<Vm> WorkerManager::Pause(const Vm& vm) {
  const std::string& name = vm.name();
  absl::StatusOr<std::shared_ptr<Worker>> worker = ReadyWorker(vm);
  if (!worker.ok()) return worker.status();
  absl::Status paused =
      CallWorker((*worker)->paths.worker_socket, kPauseRpcTimeout,
                 [](WorkerService::Stub& stub, grpc::ClientContext* context) {
                   hvstack::internal::PauseResponse response;
                   return stub.Pause(context, hvstack::internal::PauseRequest(),
                                     &response);
                 });
  if (!paused.ok()) return Annotate(name, "cannot pause", paused);
  // A stop that raced us already recorded Stopping: the table refuses Paused.
  absl::StatusOr<Vm> recorded =
      store_->SetState(vm.uuid(), VM_STATE_PAUSED, "paused by user");
  if (!recorded.ok()) {
    return absl::AbortedError(absl::StrCat(
        "VM '", name,
        "' was paused but changed meanwhile: ", recorded.status().message()));
  }
  spdlog::info("VM {}: paused", name);
  return recorded;
}

absl::Status WorkerManager::PrepareUpdate(
    const Vm& vm, const hvstack::v1::VmConfig& merged,
    const std::vector<std::string>& paths) {
  if (std::find(paths.begin(), paths.end(), "on_guest_crash") == paths.end())
    return absl::OkStatus();
  std::optional<LiveWorker> live = Live(vm.uuid());
  if (!live.has_value()) return absl::OkStatus();
  const hvstack::internal::GuestCrashAction action =
      GuestCrashActionFor(merged.on_guest_crash());
  absl::Status told = CallWorker(
      live->socket, kWorkerRpcTimeout,
      [action](WorkerService::Stub& stub, grpc::ClientContext* context) {
        hvstack::internal::SetGuestCrashActionRequest request;
        request.set_action(action);
        hvstack::internal::SetGuestCrashActionResponse response;
        return stub.SetGuestCrashAction(context, request, &response);
      });
  if (!told.ok()) {
    spdlog::warn(
        "VM {}: the running worker was not told the new guest crash policy "
        "({}); it applies from the next start",
        vm.name(), told.ToString());
  }
  return absl::OkStatus();
}

absl::StatusOr<Vm> WorkerManager::Resume(const Vm& vm) {
  const std::string& name = vm.name();
  absl::StatusOr<std::shared_ptr<Worker>> worker = ReadyWorker(vm);
  if (!worker.ok()) return worker.status();
  absl::Status resumed =
      CallWorker((*worker)->paths.worker_socket, kWorkerRpcTimeout,
                 [](WorkerService::Stub& stub, grpc::ClientContext* context) {
                   hvstack::internal::ResumeResponse response;
                   return stub.Resume(
                       context, hvstack::internal::ResumeRequest(), &response);
                 });
  if (!resumed.ok()) return Annotate(name, "cannot resume", resumed);
  absl::StatusOr<Vm> recorded =
      store_->SetState(vm.uuid(), VM_STATE_RUNNING, "resumed by user");
  if (!recorded.ok()) {
    return absl::AbortedError(absl::StrCat(
        "VM '", name,
        "' was resumed but changed meanwhile: ", recorded.status().message()));
  }
  spdlog::info("VM {}: resumed", name);
  return recorded;
}

absl::StatusOr<Vm> WorkerManager::HardReset(const Vm& vm,
                                            const std::string& reason) {
  absl::StatusOr<std::shared_ptr<Worker>> worker = ReadyWorker(vm);
  if (!worker.ok()) return worker.status();
  if (vm.state() == VM_STATE_PAUSED) {
    // The fresh worker runs: the VM is Running again from here on.
    absl::StatusOr<Vm> running =
        store_->SetState(vm.uuid(), VM_STATE_RUNNING, reason);
    if (!running.ok()) return running.status();
  }
  {
    absl::MutexLock lock(&(*worker)->mu);
    (*worker)->reset_reason = reason;
  }
  // Its supervisor sees reset_reason and respawns it (RespawnWorker).
  SignalPidfd((*worker)->pidfd.get(), SIGKILL);
  {
    absl::MutexLock lock(&(*worker)->mu);
    (*worker)->mu.AwaitWithTimeout(
        absl::Condition(worker->get(), &Worker::Exited), absl::Seconds(30));
  }
  // Then the successor is ready, or the VM ended (it could not start).
  for (absl::Time deadline = absl::Now() + options_.start_timeout;
       absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(5))) {
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(vm.uuid());
    if (it == workers_.end()) break;
    absl::MutexLock worker_lock(&it->second->mu);
    if (it->second.get() == worker->get()) {
      if (it->second->exited) break;  // Not respawned: the VM ended.
      continue;
    }
    if (it->second->ready || it->second->exited) break;
  }
  absl::StatusOr<Vm> after = store_->GetByUuid(vm.uuid());
  if (!after.ok()) return after.status();
  if (after->state() != VM_STATE_RUNNING) {
    return absl::InternalError(absl::StrCat(
        "VM '", vm.name(), "' did not come back from the reset: ",
        StateName(after->state()), " \"", after->state_reason(), "\""));
  }
  return after;
}

absl::StatusOr<Vm> WorkerManager::Reset(const Vm& vm) {
  return HardReset(vm, "reset by user (hard)");
}

absl::StatusOr<Vm> WorkerManager::Reboot(const Vm& vm) {
  const std::string& name = vm.name();
  absl::StatusOr<std::shared_ptr<Worker>> worker = ReadyWorker(vm);
  if (!worker.ok()) return worker.status();
  absl::Status asked =
      CallWorker((*worker)->paths.worker_socket, kGuestAnswerRpcTimeout,
                 [](WorkerService::Stub& stub, grpc::ClientContext* context) {
                   hvstack::internal::ShutdownGuestRequest request;
                   request.set_reboot(true);
                   request.set_reason("reboot requested by user");
                   hvstack::internal::ShutdownGuestResponse response;
                   return stub.ShutdownGuest(context, request, &response);
                 });
  if (asked.ok()) {
    // The guest resets itself; its worker then exits REBOOT_REQUESTED and the
    // supervisor starts a fresh one (a `rebooted` event).
    spdlog::info("VM {}: guest asked to reboot", name);
    return store_->Get(name);
  }
  spdlog::info("VM {}: graceful reboot not possible ({}); hard reset", name,
               std::string(asked.message()));
  return HardReset(vm, absl::StrCat("reboot requested by user: ",
                                    asked.message(), "; hard reset"));
}

absl::StatusOr<Vm> WorkerManager::GracefulShutdown(
    const Vm& vm, const ShutdownOptions& options) {
  const std::string& name = vm.name();
  absl::StatusOr<std::shared_ptr<Worker>> worker = ReadyWorker(vm);
  if (!worker.ok()) return worker.status();
  {
    absl::MutexLock lock(&(*worker)->mu);
    (*worker)->shutdown_requested = true;
  }
  absl::Status asked =
      CallWorker((*worker)->paths.worker_socket, kGuestAnswerRpcTimeout,
                 [](WorkerService::Stub& stub, grpc::ClientContext* context) {
                   hvstack::internal::ShutdownGuestRequest request;
                   request.set_reason("shutdown requested by user");
                   hvstack::internal::ShutdownGuestResponse response;
                   return stub.ShutdownGuest(context, request, &response);
                 });
  std::string why;
  if (asked.ok()) {
    absl::MutexLock lock(&(*worker)->mu);
    if ((*worker)->mu.AwaitWithTimeout(
            absl::Condition(worker->get(), &Worker::Exited), options.timeout)) {
      spdlog::info("VM {}: guest shut down", name);
      return store_->Get(name);
    }
    why = absl::StrCat("the guest did not power off within ",
                       absl::FormatDuration(options.timeout));
  } else {
    why = std::string(std::string(asked.message()));
  }
  if (!options.force_off_fallback) {
    {
      absl::MutexLock lock(&(*worker)->mu);
      (*worker)->shutdown_requested = false;
    }
    const std::string message =
        absl::StrCat("VM '", name, "' was not shut down: ", why,
                     "; it keeps running (stop it for a hard power-off, or "
                     "use the force-off fallback)");
    return asked.ok()
               ? absl::DeadlineExceededError(message)
               : absl::Status(
                     asked.code() == absl::StatusCode::kFailedPrecondition
                         ? absl::StatusCode::kFailedPrecondition
                         : absl::StatusCode::kUnavailable,
                     message);
  }
  spdlog::info("VM {}: {}; forcing it off", name, why);
  return Stop(
      vm, absl::StrCat("shutdown requested by user: ", why, "; forced off"));
}

}  // namespace vmms
