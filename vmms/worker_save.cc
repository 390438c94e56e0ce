// WorkerManager: saving a VM to files and discarding a saved state (issue
// 14). Restoring is a start (worker_manager.cc, LaunchMode.restore).
//
// Crash safety: the worker writes "<saved>/state.tmp" and "memory.tmp" (vmms
// created and opened them; the worker gets the descriptors through its
// handoff socket and opens nothing). Once SaveState succeeded vmms fsyncs
// both, renames them to "state" and "memory", fsyncs the directory, and only
// then records Saved with the vm_saved_states row in one transaction. A VM
// is Saved only with complete files; the state file carries a CRC and the
// save id the memory file must match, so a torn pair is refused at restore.
// Whatever a crash leaves behind without the row is removed (Reattach).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/fd_handoff.h"
#include "google/protobuf/util/time_util.h"
#include "proto/hvstack/internal/worker.grpc.pb.h"
#include "vmms/process_identity.h"
#include "vmms/worker_client.h"
#include "vmms/worker_manager.h"

namespace vmms {
namespace {

using hvstack::internal::WorkerService;

// Writing guest memory is disk-bound: generous, and the worker ends anyway.
constexpr absl::Duration kSaveRpcTimeout = absl::Minutes(10);
// After SaveState returned, the worker only tears down.
constexpr absl::Duration kSavedExitWait = absl::Seconds(60);
constexpr absl::Duration kKillWait = absl::Seconds(30);

// A handoff token nobody else can guess.
std::string NewToken() {
  unsigned char bytes[16] = {};
  (void)!::getrandom(bytes, sizeof(bytes), 0);
  std::string token = "save-";
  for (unsigned char b : bytes)
    absl::StrAppend(&token, absl::Hex(b, absl::kZeroPad2));
  return token;
}

std::string TmpOf(const std::string& path) { return path + ".tmp"; }

absl::Status SyncFd(int fd, const std::string& what) {
  if (::fsync(fd) != 0) return absl::ErrnoToStatus(errno, "fsync " + what);
  return absl::OkStatus();
}

absl::Status SyncDir(const std::string& dir) {
  base::ScopedFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return absl::ErrnoToStatus(errno, "open " + dir);
  return SyncFd(fd.get(), dir);
}

}  // namespace

void RemoveSavedFiles(const RuntimePaths& paths) {
  std::error_code ec;
  for (const std::string& f :
       {paths.saved_state, paths.saved_memory, TmpOf(paths.saved_state),
        TmpOf(paths.saved_memory)}) {
    std::filesystem::remove(f, ec);
  }
  std::filesystem::remove(paths.saved_dir, ec);
}

absl::StatusOr<Vm> WorkerManager::Save(const Vm& vm) {
  const std::string& name = vm.name();
  absl::StatusOr<std::shared_ptr<Worker>> ready = ReadyWorker(vm);
  if (!ready.ok()) return ready.status();
  std::shared_ptr<Worker> worker = *std::move(ready);
  const hvstack::v1::VmState prior = vm.state();
  const RuntimePaths& paths = worker->paths;
  const absl::Time start = absl::Now();
  {
    absl::MutexLock lock(&worker->mu);
    if (worker->exited || worker->stop_reason.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat("VM '", name, "' is ending; it cannot be saved"));
    }
    worker->saving = true;
    worker->save_outcome.reset();
    worker->exit_saved = false;
  }

  // How a save that did not complete ends: the files go; a worker that lives
  // on resumed the VM itself (the VM is as it was), a dead one is recorded
  // as its end says.
  auto fail = [&](absl::Status error) -> absl::Status {
    RemoveSavedFiles(paths);
    absl::MutexLock lock(&worker->mu);
    worker->saving = false;
    const std::string why = std::string(error.message());
    if (worker->exited) {
      WorkerOutcome outcome = worker->save_outcome.value_or(WorkerOutcome{
          hvstack::v1::VM_STATE_CRASHED, "worker ended", absl::OkStatus()});
      if (outcome.state != hvstack::v1::VM_STATE_OFF &&
          outcome.state != hvstack::v1::VM_STATE_CRASHED) {
        outcome.state = hvstack::v1::VM_STATE_CRASHED;
      }
      absl::StatusOr<Vm> ended = store_->SetState(
          worker->uuid, outcome.state,
          absl::StrCat(outcome.reason, " (during a save; nothing was saved)"),
          0);
      if (!ended.ok()) {
        spdlog::error("VM {}: cannot record the end of its worker: {}", name,
                      ended.status().ToString());
      }
      spdlog::error("VM {}: save failed, the worker ended: {}", name, why);
      return absl::AbortedError(
          absl::StrCat("VM '", name, "': save failed: the worker ended (",
                       outcome.reason, "): ", why));
    }
    absl::StatusOr<Vm> back = store_->SetState(
        worker->uuid, prior, absl::StrCat("save failed: ", why));
    if (!back.ok()) {
      spdlog::error("VM {}: cannot record {} after a failed save: {}", name,
                    StateName(prior), back.status().ToString());
    }
    spdlog::warn("VM {}: save failed (the VM goes on): {}", name, why);
    return absl::Status(error.code(),
                        absl::StrCat("VM '", name, "': save failed: ", why));
  };

  absl::StatusOr<Vm> saving =
      store_->SetState(vm.uuid(), hvstack::v1::VM_STATE_SAVING,
                       absl::StrCat("save requested (", StateName(prior), ")"));
  if (!saving.ok()) {
    absl::MutexLock lock(&worker->mu);
    worker->saving = false;
    return saving.status();
  }

  // The files: vmms's, in a directory only root can enter.
  RemoveSavedFiles(paths);
  if (::mkdir(paths.saved_dir.c_str(), 0700) != 0 && errno != EEXIST)
    return fail(absl::ErrnoToStatus(errno, "mkdir " + paths.saved_dir));
  base::ScopedFd state_fd(::open(TmpOf(paths.saved_state).c_str(),
                                 O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!state_fd)
    return fail(
        absl::ErrnoToStatus(errno, "create " + TmpOf(paths.saved_state)));
  base::ScopedFd memory_fd(::open(TmpOf(paths.saved_memory).c_str(),
                                  O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
                                  0600));
  if (!memory_fd) {
    return fail(
        absl::ErrnoToStatus(errno, "create " + TmpOf(paths.saved_memory)));
  }
  const std::string token = NewToken();
  const int fds[] = {state_fd.get(), memory_fd.get()};
  if (absl::Status s = base::SendFdsTo(paths.handoff_socket, token, fds);
      !s.ok()) {
    return fail(absl::Status(
        s.code(),
        absl::StrCat("cannot hand the files to the worker: ", s.message())));
  }
  hvstack::internal::SaveStateResponse response;
  absl::Status saved =
      CallWorker(paths.worker_socket, kSaveRpcTimeout,
                 [&](WorkerService::Stub& stub, grpc::ClientContext* context) {
                   hvstack::internal::SaveStateRequest request;
                   request.set_handoff_token(token);
                   request.set_stop_after(true);
                   return stub.SaveState(context, request, &response);
                 });
  if (!saved.ok()) {
    // Killed (or dying): its supervisor records the end before we decide.
    pollfd p = {worker->pidfd.get(), POLLIN, 0};
    if (::poll(&p, 1, 1000) == 1) {
      absl::MutexLock lock(&worker->mu);
      worker->mu.AwaitWithTimeout(
          absl::Condition(worker.get(), &Worker::Exited), kKillWait);
    }
    return fail(saved);
  }
  // Complete: durable under the final names before the record says Saved.
  if (absl::Status s = SyncFd(state_fd.get(), paths.saved_state); !s.ok())
    return fail(s);
  if (absl::Status s = SyncFd(memory_fd.get(), paths.saved_memory); !s.ok())
    return fail(s);
  if (::rename(TmpOf(paths.saved_state).c_str(), paths.saved_state.c_str()) !=
          0 ||
      ::rename(TmpOf(paths.saved_memory).c_str(), paths.saved_memory.c_str()) !=
          0) {
    return fail(absl::ErrnoToStatus(errno, "rename the saved files"));
  }
  if (absl::Status s = SyncDir(paths.saved_dir); !s.ok()) return fail(s);

  // The worker ends by itself (WorkerExitReport.SAVED); one that hangs in
  // its teardown is killed: its state is on disk.
  {
    absl::MutexLock lock(&worker->mu);
    if (!worker->mu.AwaitWithTimeout(
            absl::Condition(worker.get(), &Worker::Exited), kSavedExitWait)) {
      spdlog::warn("VM {}: worker {} saved the VM but did not exit; killing it",
                   name, worker->pid);
      SignalPidfd(worker->pidfd.get(), SIGKILL);
      worker->mu.AwaitWithTimeout(
          absl::Condition(worker.get(), &Worker::Exited), kKillWait);
    }
    worker->saving = false;
  }
  hvstack::v1::SavedStateInfo info;
  *info.mutable_save_time() =
      google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
          absl::ToUnixMicros(start));
  info.set_saved_from(prior);
  info.set_state_file(paths.saved_state);
  info.set_memory_file(paths.saved_memory);
  info.set_state_bytes(response.state_bytes());
  info.set_memory_pages_written(response.memory_pages_written());
  info.set_memory_pages_total(response.memory_pages_total());
  info.set_save_duration_us(response.paused_us());
  absl::StatusOr<Vm> recorded = store_->RecordSaved(
      vm.uuid(), info,
      absl::StrCat("saved by user (", response.memory_pages_written(), " of ",
                   response.memory_pages_total(), " memory pages written)"));
  if (!recorded.ok()) {
    spdlog::error("VM {}: saved, but cannot record it: {}", name,
                  recorded.status().ToString());
    return recorded.status();
  }
  spdlog::info(
      "VM {}: saved in {} (state {} bytes, {} of {} memory pages; guest "
      "paused {} us)",
      name, absl::FormatDuration(absl::Now() - start), response.state_bytes(),
      response.memory_pages_written(), response.memory_pages_total(),
      response.paused_us());
  return recorded;
}

absl::StatusOr<Vm> WorkerManager::DiscardSaved(const Vm& vm) {
  absl::StatusOr<Vm> off = store_->DropSaved(
      vm.uuid(), hvstack::v1::VM_STATE_OFF, "saved state discarded", 0);
  if (!off.ok()) return off.status();
  // After the commit: files without a row are never used (and Reattach
  // removes what a crash here leaves).
  RemoveSavedFiles(RuntimePathsFor(options_.state_dir, vm.uuid()));
  spdlog::info("VM {}: saved state discarded", vm.name());
  return off;
}

}  // namespace vmms
