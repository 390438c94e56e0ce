#include "vmms/vm_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <future>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "vmms/runtime_paths.h"
#include "vmms/state_machine.h"
#include "vmms/validation.h"

namespace vmms {
namespace {

using hvstack::v1::VM_STATE_CRASHED;
using hvstack::v1::VM_STATE_OFF;

// An automatic restart waits this long for an operation in progress.
constexpr absl::Duration kRestartLockWait = absl::Minutes(5);

bool RestartsOnFailure(hvstack::v1::RestartPolicy policy) {
  return policy == hvstack::v1::RESTART_POLICY_ON_FAILURE ||
         policy == hvstack::v1::RESTART_POLICY_ALWAYS;
}

}  // namespace

VmManager::VmManager(VmStore* store, VmManagerOptions options)
    : store_(store), options_(std::move(options)) {}

VmManager::~VmManager() { Shutdown(); }

// The libvirt backend of a vmms started without --libvirt-uri: every call
// about a libvirt VM says how to enable it; reads show the record.
class MissingLibvirt final : public VmBackend {
 public:
  const char* name() const override { return "libvirt"; }
  absl::Status Create(const Vm& vm) override { return Error(vm); }
  absl::StatusOr<Vm> Start(const Vm& vm, const std::string&) override {
    return Error(vm);
  }
  absl::StatusOr<Vm> Stop(const Vm& vm, const std::string&) override {
    return Error(vm);
  }
  absl::StatusOr<Vm> Pause(const Vm& vm) override { return Error(vm); }
  absl::StatusOr<Vm> Resume(const Vm& vm) override { return Error(vm); }
  absl::StatusOr<Vm> Reset(const Vm& vm) override { return Error(vm); }
  absl::StatusOr<Vm> Reboot(const Vm& vm) override { return Error(vm); }
  absl::StatusOr<Vm> GracefulShutdown(const Vm& vm,
                                      const ShutdownOptions&) override {
    return Error(vm);
  }
  absl::Status Forget(const Vm& vm) override { return Error(vm); }
  absl::Status PrepareUpdate(const Vm& vm, const hvstack::v1::VmConfig&,
                             const std::vector<std::string>&) override {
    return Error(vm);
  }
  Vm Describe(Vm vm) override {
    vm.mutable_libvirt()->set_error(std::string(Error(vm).message()));
    return vm;
  }
  absl::StatusOr<ConsoleSource> Console(const Vm& vm) override {
    return Error(vm);
  }
  std::optional<ConsoleSource> NextConsole(const Vm&, uint64_t,
                                           absl::Duration) override {
    return std::nullopt;
  }
  hvstack::v1::VmStats Stats(const Vm& vm, absl::Duration) override {
    hvstack::v1::VmStats stats;
    stats.set_name(vm.name());
    stats.set_uuid(vm.uuid());
    stats.set_state(vm.state());
    stats.set_worker_error(std::string(Error(vm).message()));
    return stats;
  }
  absl::Status Reattach(const std::vector<Vm>&) override {
    return absl::OkStatus();
  }
  void Shutdown(const std::string&) override {}

 private:
  static absl::Status Error(const Vm& vm) {
    return absl::FailedPreconditionError(absl::StrCat(
        "VM '", vm.name(),
        "' uses the libvirt backend, but vmms runs without --libvirt-uri: "
        "restart vmms with --libvirt-uri URI (e.g. qemu:///system) to manage "
        "libvirt VMs"));
  }
};

void VmManager::SetBackends(VmBackend* hvstack, LibvirtBackend* libvirt) {
  hvstack_ = hvstack;
  libvirt_ = libvirt;
  libvirt_backend_ = libvirt;
  if (libvirt_ == nullptr) {
    missing_libvirt_ = std::make_unique<MissingLibvirt>();
    libvirt_ = missing_libvirt_.get();
  }
}

VmBackend* VmManager::BackendOf(const Vm& vm) {
  return vm.config().backend() == hvstack::v1::BACKEND_LIBVIRT ? libvirt_
                                                               : hvstack_;
}

absl::StatusOr<Vm> VmManager::Create(const Vm& vm) {
  // A taken name is refused before the backend defines anything.
  if (absl::StatusOr<Vm> existing = store_->Get(vm.name()); existing.ok()) {
    return absl::AlreadyExistsError(
        absl::StrCat("VM '", vm.name(), "' already exists"));
  }
  VmBackend* backend = BackendOf(vm);
  if (absl::Status s = backend->Create(vm); !s.ok()) return s;
  absl::StatusOr<Vm> created = store_->Create(vm);
  if (!created.ok()) {
    (void)backend->Forget(vm);
    return created.status();
  }
  if (created->config().backend() == hvstack::v1::BACKEND_LIBVIRT &&
      created->config().nics_size() > 0) {
    // The store generated the MACs the domain's adapters must have.
    if (absl::Status s =
            backend->PrepareUpdate(*created, created->config(), {"nics"});
        !s.ok()) {
      spdlog::warn("VM {}: its domain keeps libvirt's MACs until it starts: {}",
                   created->name(), std::string(s.message()));
    }
  }
  spdlog::info("VM {} ({}) created ({} backend)", created->name(),
               created->uuid(), backend->name());
  return created;
}

absl::StatusOr<Vm> VmManager::Start(const std::string& name,
                                    absl::Time deadline) {
  absl::StatusOr<LockedVm> locked = Lock(name, VmRequest::kStart, deadline);
  if (!locked.ok()) return locked.status();
  const Vm* vm = &locked->vm;
  // A client's start: the restart policy's count and backoff start over.
  {
    absl::MutexLock lock(&mu_);
    restart_attempts_.erase(vm->uuid());
  }
  if (vm->restart_count() != 0) (void)store_->SetRestartCount(vm->uuid(), 0);
  return StartLocked(name, "start requested");
}

absl::StatusOr<Vm> VmManager::StartLocked(const std::string& name,
                                          const std::string& reason) {
  absl::StatusOr<Vm> vm = store_->Get(name);
  if (!vm.ok()) return vm.status();
  if (absl::Status s = CheckRequest(*vm, VmRequest::kStart); !s.ok()) return s;
  return BackendOf(*vm)->Start(*vm, reason);
}

absl::StatusOr<Vm> VmManager::Stop(const std::string& name,
                                   const std::string& reason) {
  absl::StatusOr<Vm> vm = store_->Get(name);
  if (!vm.ok()) return vm.status();
  return BackendOf(*vm)->Stop(*vm, reason);
}

absl::Status VmManager::Delete(const std::string& name, absl::Time deadline) {
  absl::StatusOr<LockedVm> locked = Lock(name, VmRequest::kDelete, deadline);
  if (!locked.ok()) return locked.status();
  const Vm* vm = &locked->vm;
  if (absl::Status s = BackendOf(*vm)->Forget(*vm); !s.ok()) return s;
  if (absl::Status s = store_->Delete(vm->uuid()); !s.ok()) return s;
  std::error_code ec;
  std::string dir = RuntimePathsFor(options_.state_dir, vm->uuid()).dir;
  std::filesystem::remove_all(dir, ec);
  if (ec) spdlog::warn("VM {}: cannot remove {}: {}", name, dir, ec.message());
  spdlog::info("VM {} ({}) deleted", name, vm->uuid());
  return absl::OkStatus();
}

namespace {

absl::Status NoLibvirt(absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat(
      what,
      ": vmms runs without --libvirt-uri: restart vmms with --libvirt-uri URI "
      "(e.g. qemu:///system) to manage libvirt domains"));
}

}  // namespace

absl::Status VmManager::CheckHardwareChange(const Vm& vm,
                                            const hvstack::v1::VmConfig& merged,
                                            absl::string_view what) {
  if (vm.config().backend() != hvstack::v1::BACKEND_LIBVIRT ||
      libvirt_backend_ == nullptr) {
    return absl::OkStatus();
  }
  return libvirt_backend_->CheckHardware(vm, merged, what);
}

absl::StatusOr<hvstack::v1::ListLibvirtDomainsResponse>
VmManager::ListUnmanagedLibvirtDomains() {
  if (libvirt_backend_ == nullptr) {
    return NoLibvirt("cannot list libvirt's domains");
  }
  return libvirt_backend_->ListUnmanaged();
}

absl::StatusOr<Vm> VmManager::AdoptLibvirtDomain(const std::string& domain,
                                                 const std::string& name) {
  if (libvirt_backend_ == nullptr) {
    return NoLibvirt(absl::StrCat("domain '", domain, "' cannot be adopted"));
  }
  if (!name.empty()) {
    if (absl::Status s = ValidateVmName(name); !s.ok()) return s;
  }
  absl::StatusOr<Vm> record = libvirt_backend_->AdoptionRecord(domain, name);
  if (!record.ok()) return record.status();
  if (name.empty()) {
    if (absl::Status s = ValidateVmName(record->name()); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("domain '", domain, "' needs a VM name of its own (",
                       s.message(), "): adopt it with --name NAME"));
    }
  }
  // One adoption of a name at a time; the store refuses a taken name.
  absl::StatusOr<VmOpLocks::Guard> guard = op_locks_.Acquire(
      record->name(), "adopt", absl::Now() + absl::Seconds(10));
  if (!guard.ok()) return guard.status();
  if (store_->Get(record->name()).ok()) {
    return absl::AlreadyExistsError(
        absl::StrCat("VM '", record->name(), "' already exists: adopt domain '",
                     record->libvirt().domain_name(), "' with --name OTHER"));
  }
  absl::StatusOr<Vm> created = store_->Create(
      *record, absl::StrCat("adopted from libvirt (domain ",
                            record->libvirt().domain_name(), ")"));
  if (!created.ok()) return created.status();
  libvirt_backend_->Adopted(*created);
  spdlog::info("VM {} ({}) adopted: libvirt domain {}", created->name(),
               created->uuid(), record->libvirt().domain_name());
  absl::StatusOr<Vm> now = store_->GetByUuid(created->uuid());
  if (!now.ok()) return now.status();
  return ForReply(*std::move(now));
}

absl::StatusOr<Vm> VmManager::ReleaseLibvirtDomain(const std::string& name,
                                                   absl::Time deadline) {
  absl::StatusOr<VmOpLocks::Guard> guard =
      op_locks_.Acquire(name, "release", deadline);
  if (!guard.ok()) return guard.status();
  absl::StatusOr<Vm> vm = store_->Get(name);
  if (!vm.ok()) return vm.status();
  if (vm->config().backend() != hvstack::v1::BACKEND_LIBVIRT) {
    return absl::FailedPreconditionError(absl::StrCat(
        "VM '", name,
        "' runs on hvstack's own backend, not libvirt: there is no domain "
        "to hand back (delete it instead)"));
  }
  if (libvirt_backend_ == nullptr) {
    return NoLibvirt(absl::StrCat("VM '", name, "' cannot be released"));
  }
  Vm described = ForReply(*vm);
  libvirt_backend_->Release(*vm);
  if (absl::Status s = store_->Delete(
          vm->uuid(),
          absl::StrCat("released to libvirt (domain ",
                       described.libvirt().domain_name(), " kept as it is)"));
      !s.ok()) {
    return s;
  }
  std::error_code ec;
  std::filesystem::remove_all(
      RuntimePathsFor(options_.state_dir, vm->uuid()).dir, ec);
  spdlog::info("VM {} ({}) released: libvirt domain {} left to libvirt", name,
               vm->uuid(), described.libvirt().domain_name());
  return described;
}

absl::StatusOr<VmManager::LockedVm> VmManager::Lock(const std::string& name,
                                                    VmRequest request,
                                                    absl::Time deadline) {
  absl::StatusOr<VmOpLocks::Guard> guard =
      op_locks_.Acquire(name, RequestName(request), deadline);
  if (!guard.ok()) return guard.status();
  absl::StatusOr<Vm> vm = store_->Get(name);
  if (!vm.ok()) return vm.status();
  if (absl::Status s = CheckRequest(*vm, request); !s.ok()) return s;
  return LockedVm{*std::move(guard), *std::move(vm)};
}

absl::StatusOr<Vm> VmManager::Pause(const std::string& name,
                                    absl::Time deadline) {
  absl::StatusOr<LockedVm> locked = Lock(name, VmRequest::kPause, deadline);
  if (!locked.ok()) return locked.status();
  return BackendOf(locked->vm)->Pause(locked->vm);
}

absl::StatusOr<Vm> VmManager::Save(const std::string& name,
                                   absl::Time deadline) {
  absl::StatusOr<LockedVm> locked = Lock(name, VmRequest::kSave, deadline);
  if (!locked.ok()) return locked.status();
  spdlog::info("VM {}: save requested", name);
  return BackendOf(locked->vm)->Save(locked->vm);
}

absl::StatusOr<Vm> VmManager::DiscardSaved(const std::string& name,
                                           absl::Time deadline) {
  absl::StatusOr<LockedVm> locked =
      Lock(name, VmRequest::kDiscardSaved, deadline);
  if (!locked.ok()) return locked.status();
  return BackendOf(locked->vm)->DiscardSaved(locked->vm);
}

absl::StatusOr<Vm> VmManager::Resume(const std::string& name,
                                     absl::Time deadline) {
  absl::StatusOr<LockedVm> locked = Lock(name, VmRequest::kResume, deadline);
  if (!locked.ok()) return locked.status();
  return BackendOf(locked->vm)->Resume(locked->vm);
}

absl::StatusOr<Vm> VmManager::Reset(const std::string& name,
                                    absl::Time deadline) {
  absl::StatusOr<LockedVm> locked = Lock(name, VmRequest::kReset, deadline);
  if (!locked.ok()) return locked.status();
  spdlog::info("VM {}: hard reset requested", name);
  return BackendOf(locked->vm)->Reset(locked->vm);
}

absl::StatusOr<Vm> VmManager::Reboot(const std::string& name,
                                     absl::Time deadline) {
  absl::StatusOr<LockedVm> locked = Lock(name, VmRequest::kReboot, deadline);
  if (!locked.ok()) return locked.status();
  return BackendOf(locked->vm)->Reboot(locked->vm);
}

absl::StatusOr<Vm> VmManager::GracefulShutdown(const std::string& name,
                                               const ShutdownOptions& options,
                                               absl::Time deadline) {
  absl::StatusOr<LockedVm> locked = Lock(name, VmRequest::kShutdown, deadline);
  if (!locked.ok()) return locked.status();
  return BackendOf(locked->vm)->GracefulShutdown(locked->vm, options);
}

absl::StatusOr<Vm> VmManager::Update(const std::string& name,
                                     const hvstack::v1::VmConfig& config,
                                     const std::vector<std::string>& paths,
                                     absl::Time deadline) {
  absl::StatusOr<VmOpLocks::Guard> guard =
      op_locks_.Acquire(name, "update", deadline);
  if (!guard.ok()) return guard.status();
  absl::StatusOr<Vm> vm = store_->Get(name);
  if (!vm.ok()) return vm.status();
  // Whether hardware fields may change in this state is checked inside the
  // store's transaction.
  if (absl::Status s = BackendOf(*vm)->PrepareUpdate(*vm, config, paths);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<Vm> updated = store_->Update(vm->uuid(), config, paths);
  if (updated.ok()) spdlog::info("VM {}: {}", name, "configuration updated");
  return updated;
}

absl::StatusOr<Vm> VmManager::ChangeNics(
    const std::string& name, absl::Time deadline,
    const std::function<absl::StatusOr<Vm>(const Vm&)>& change) {
  absl::StatusOr<LockedVm> locked =
      Lock(name, VmRequest::kUpdateHardware, deadline);
  if (!locked.ok()) return locked.status();
  return change(locked->vm);
}

absl::StatusOr<Vm> VmManager::Describe(const std::string& name) {
  absl::StatusOr<Vm> vm = store_->Get(name);
  if (!vm.ok()) return vm.status();
  return ForReply(*std::move(vm));
}

Vm VmManager::ForReply(Vm vm) {
  VmBackend* backend = BackendOf(vm);
  return backend->Describe(std::move(vm));
}

absl::StatusOr<ConsoleSource> VmManager::Console(const std::string& name) {
  absl::StatusOr<Vm> vm = store_->Get(name);
  if (!vm.ok()) return vm.status();
  return BackendOf(*vm)->Console(*vm);
}

std::optional<ConsoleSource> VmManager::NextConsole(const std::string& name,
                                                    uint64_t generation,
                                                    absl::Duration timeout) {
  absl::StatusOr<Vm> vm = store_->Get(name);
  if (!vm.ok()) return std::nullopt;
  return BackendOf(*vm)->NextConsole(*vm, generation, timeout);
}

hvstack::v1::VmStats VmManager::Stats(const Vm& vm, absl::Duration timeout) {
  return BackendOf(vm)->Stats(vm, timeout);
}

std::vector<hvstack::v1::VmStats> VmManager::ListStats(
    const std::vector<Vm>& vms, absl::Duration timeout) {
  // Only VMs that may be running need a thread (a call that may wait); the
  // rest are their record.
  std::vector<std::optional<std::future<hvstack::v1::VmStats>>> pending(
      vms.size());
  std::vector<hvstack::v1::VmStats> out(vms.size());
  for (size_t i = 0; i < vms.size(); ++i) {
    const Vm& vm = vms[i];
    if (HasWorker(vm.state())) {
      pending[i] = std::async(std::launch::async, [this, &vm, timeout] {
        return Stats(vm, timeout);
      });
    } else {
      out[i] = Stats(vm, timeout);
    }
  }
  for (size_t i = 0; i < vms.size(); ++i) {
    if (pending[i].has_value()) out[i] = pending[i]->get();
  }
  return out;
}

absl::Status VmManager::Reattach() {
  absl::StatusOr<std::vector<Vm>> vms = store_->List();
  if (!vms.ok()) return vms.status();
  if (absl::Status s = hvstack_->Reattach(*vms); !s.ok()) return s;
  return libvirt_->Reattach(*vms);
}

void VmManager::Shutdown(const std::string& reason) {
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
  }
  if (hvstack_ != nullptr) hvstack_->Shutdown(reason);
  if (libvirt_ != nullptr) libvirt_->Shutdown(reason);
  // Restarts waiting for their backoff see shutting_down_ and give up.
  std::vector<std::thread> restarters;
  {
    absl::MutexLock lock(&mu_);
    restarters.swap(restarters_);
  }
  for (std::thread& t : restarters) t.join();
}

void VmManager::StartAutostartVms() {
  absl::StatusOr<std::vector<Vm>> vms = store_->List();
  if (!vms.ok()) {
    spdlog::error("autostart: cannot list VMs: {}",
                  std::string(vms.status().message()));
    return;
  }
  absl::MutexLock lock(&mu_);
  for (const Vm& vm : *vms) {
    // A crash whose policy restart was pending when vmms stopped (or one
    // recorded while vmms was down) is restarted now, like an autostart.
    const bool restart_due = vm.state() == VM_STATE_CRASHED &&
                             RestartsOnFailure(vm.config().restart_policy());
    if (!vm.config().autostart() && !restart_due) continue;
    if (vm.state() != VM_STATE_OFF && vm.state() != VM_STATE_CRASHED) continue;
    const std::string reason =
        vm.config().autostart()
            ? "autostart (vmms started)"
            : absl::StrCat("restarted by policy ",
                           RestartPolicyName(vm.config().restart_policy()),
                           " when vmms started, after: ", vm.state_reason());
    // Through the restart machinery: a thread of its own, joined at shutdown.
    restarters_.emplace_back([this, name = vm.name(), uuid = vm.uuid(),
                              reason] {
      absl::StatusOr<VmOpLocks::Guard> guard =
          op_locks_.Acquire(name, "autostart", absl::Now() + kRestartLockWait);
      if (!guard.ok()) return;
      absl::StatusOr<Vm> current = store_->GetByUuid(uuid);
      if (!current.ok() || !CheckRequest(*current, VmRequest::kStart).ok())
        return;
      absl::StatusOr<Vm> started = StartLocked(name, reason);
      if (started.ok()) {
        spdlog::info("VM {}: autostarted", name);
      } else {
        spdlog::error("VM {}: autostart failed: {}", name,
                      std::string(started.status().message()));
      }
    });
  }
}

void VmManager::VmEndedOnItsOwn(const Vm& final_vm, absl::Time up_since) {
  const hvstack::v1::RestartPolicy policy = final_vm.config().restart_policy();
  if (!RestartsOnFailure(policy)) return;
  const bool crashed = final_vm.state() == VM_STATE_CRASHED;
  if (!crashed && policy != hvstack::v1::RESTART_POLICY_ALWAYS) return;
  if (!crashed && final_vm.state() != VM_STATE_OFF) return;

  absl::MutexLock lock(&mu_);
  if (shutting_down_) return;
  uint32_t& attempts = restart_attempts_[final_vm.uuid()];
  if (up_since != absl::Time() &&
      absl::Now() - up_since >= options_.restart_stable_after) {
    attempts = 0;
  }
  absl::Duration delay = options_.restart_backoff;
  for (uint32_t i = 0; i < attempts && delay < options_.restart_backoff_max;
       ++i) {
    delay *= 2;
  }
  delay = std::min(delay, options_.restart_backoff_max);
  ++attempts;
  spdlog::info("VM {}: restart policy {}: restarting in {} (attempt {})",
               final_vm.name(), RestartPolicyName(policy),
               absl::FormatDuration(delay), attempts);
  restarters_.emplace_back([this, name = final_vm.name(),
                            uuid = final_vm.uuid(), delay, n = attempts,
                            why = final_vm.state_reason()] {
    RestartAfter(name, uuid, delay, n, why);
  });
}

void VmManager::RestartAfter(std::string name, std::string uuid,
                             absl::Duration delay, uint32_t attempt,
                             std::string why) {
  {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&shutting_down_), delay);
    if (shutting_down_) return;
  }
  absl::StatusOr<VmOpLocks::Guard> guard =
      op_locks_.Acquire(name, "restart", absl::Now() + kRestartLockWait);
  if (!guard.ok()) {
    spdlog::warn("VM {}: restart skipped: {}", name,
                 std::string(guard.status().message()));
    return;
  }
  absl::StatusOr<Vm> vm = store_->GetByUuid(uuid);
  // Deleted, renamed away, started by a client meanwhile, or its policy set
  // to never (the way to cancel a pending restart).
  if (!vm.ok() || vm->name() != name ||
      !CheckRequest(*vm, VmRequest::kStart).ok() ||
      !RestartsOnFailure(vm->config().restart_policy())) {
    return;
  }
  (void)store_->SetRestartCount(uuid, vm->restart_count() + 1);
  absl::StatusOr<Vm> started = StartLocked(
      name, absl::StrCat("restarted by policy ",
                         RestartPolicyName(vm->config().restart_policy()),
                         " (attempt ", attempt, ") after: ", why));
  if (!started.ok()) {
    spdlog::error("VM {}: automatic restart failed: {}", name,
                  std::string(started.status().message()));
  }
}

}  // namespace vmms
