#include "vid/partition.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hvcore/msr.h"
#include "spdlog/spdlog.h"

namespace vid {
namespace {

// Reserves the hypercall trap port so no device can claim it: a 4-byte OUT is
// a hypercall (handled before dispatch); anything else is an unclaimed port.
class ReservedPort final : public PortIoHandler {
 public:
  uint32_t PortRead(uint16_t, uint8_t) override { return 0xFFFFFFFF; }
  void PortWrite(uint16_t, uint8_t, uint32_t) override {}
};

}  // namespace

absl::string_view RunOutcomeKindName(RunOutcome::Kind kind) {
  switch (kind) {
    case RunOutcome::Kind::kPowerOff:
      return "power_off";
    case RunOutcome::Kind::kCrashed:
      return "crashed";
    case RunOutcome::Kind::kStopped:
      return "stopped";
    case RunOutcome::Kind::kReboot:
      return "reboot";
  }
  return "unknown";
}

absl::Status InterruptLine::Set(bool level) {
  if (partition_ == nullptr) return absl::OkStatus();
  return partition_->SetIrqLine(gsi_, level);
}
absl::Status InterruptLine::Raise() { return Set(true); }
absl::Status InterruptLine::Lower() { return Set(false); }
absl::Status InterruptLine::Pulse() {
  if (absl::Status s = Set(true); !s.ok()) return s;
  return Set(false);
}

Partition::Partition(const PartitionConfig& config,
                     std::unique_ptr<hvcore::KvmSystem> kvm,
                     std::unique_ptr<GuestMemory> memory)
    : config_(config),
      vcpus_(config.vcpus),
      kvm_(std::move(kvm)),
      memory_(std::move(memory)),
      vp_state_(new VpState[config.vcpus]) {}

// Members are destroyed in reverse order: VPs (vcpu fds, kvm_run), then the VM
// fd, then the guest memory KVM had mapped (see the member declarations).
Partition::~Partition() {
  vps_.clear();
  hv_.reset();
}

absl::StatusOr<std::unique_ptr<Partition>> Partition::Create(
    const PartitionConfig& config, base::ScopedFd kvm_fd) {
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Adopt(std::move(kvm_fd));
  if (!kvm.ok()) return kvm.status();
  return Create(config, **kvm);
}

absl::StatusOr<std::unique_ptr<Partition>> Partition::Create(
    const PartitionConfig& config, const hvcore::KvmSystem& kvm) {
  return CreateWith(config, kvm, nullptr);
}

absl::StatusOr<std::unique_ptr<Partition>> Partition::CreateWith(
    const PartitionConfig& config, const hvcore::KvmSystem& kvm,
    std::unique_ptr<GuestMemory> given_memory) {
  const uint32_t max_vcpus =
      kvm.max_vcpus() > 0
          ? std::min<uint32_t>(kvm.max_vcpus(), hvcore::kMaxXApicVcpus)
          : hvcore::kMaxXApicVcpus;
  if (config.vcpus == 0 || config.vcpus > max_vcpus) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%d VPs requested; this host allows 1 to %d", config.vcpus, max_vcpus));
  }
  // Our own handle on /dev/kvm, so Reset() can create a VM after `kvm` is
  // gone.
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> own = kvm.Duplicate();
  if (!own.ok()) return own.status();
  absl::StatusOr<std::unique_ptr<GuestMemory>> memory =
      given_memory != nullptr ? std::move(given_memory)
                              : GuestMemory::Create(config.memory_bytes);
  if (!memory.ok()) return memory.status();
  if ((*memory)->size() != config.memory_bytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("guest memory of %d bytes for a partition of %d",
                        (*memory)->size(), config.memory_bytes));
  }
  std::unique_ptr<Partition> p(
      new Partition(config, std::move(*own), std::move(*memory)));
  absl::StatusOr<Vm> vm = p->CreateVm();
  if (!vm.ok()) return vm.status();
  p->hv_ = std::move(vm->hv);
  p->vps_ = std::move(vm->vps);
  if (config.enlightened) {
    if (absl::Status s = p->SetUpSyntheticInterface(); !s.ok()) return s;
  }
  return p;
}

absl::Status Partition::SetUpSyntheticInterface() {
  absl::StatusOr<int64_t> offset =
      SyntheticInterface::MeasureGuestTscOffset(*vps_[0]);
  if (!offset.ok()) return offset.status();
  absl::StatusOr<std::unique_ptr<SyntheticInterface>> si =
      SyntheticInterface::Create(
          vcpus_, hv_->tsc_khz(), *offset, *memory_,
          [this](uint64_t address, uint32_t data) {
            (void)SignalMsi(address, data);  // logged there
          },
          config_.crash_handler);
  if (!si.ok()) return si.status();
  synthetic_ = *std::move(si);
  hypercall_port_reservation_ = std::make_unique<ReservedPort>();
  return io_.RegisterPortIo("hyperv_hypercall",
                            synthetic_->hv().hypercall_port(), 1,
                            hypercall_port_reservation_.get());
}

absl::StatusOr<Partition::Vm> Partition::CreateVm() {
  Vm vm;
  absl::StatusOr<std::unique_ptr<hvcore::Partition>> hv =
      hvcore::Partition::Create(*kvm_,
                                {.vcpu_count = config_.vcpus,
                                 .irqchip = true,
                                 .kvm_cpuid_base = config_.kvm_cpuid_base,
                                 .hyperv = config_.enlightened});
  if (!hv.ok()) return hv.status();
  vm.hv = std::move(*hv);
  for (const GuestMemory::Region& r : memory_->regions()) {
    absl::StatusOr<uint32_t> slot = vm.hv->MapUserMemory(r.gpa, r.size, r.host);
    if (!slot.ok()) return slot.status();
  }
  for (uint32_t i = 0; i < config_.vcpus; ++i) {
    absl::StatusOr<std::unique_ptr<hvcore::VirtualProcessor>> vp =
        vm.hv->CreateVp(i);
    if (!vp.ok()) return vp.status();
    vm.vps.push_back(std::move(*vp));
  }
  return vm;
}

absl::Status Partition::Reset() {
  {
    absl::MutexLock lock(&mu_);
    if (running_) {
      return absl::FailedPreconditionError(
          "Partition::Reset: Run() is still in progress");
    }
  }
  // The reference clock keeps running across a reset (it was started with the
  // partition), so the new VPs continue the guest TSC where it was.
  const std::optional<uint64_t> guest_tsc =
      synthetic_ != nullptr
          ? std::optional<uint64_t>(synthetic_->ReadGuestTsc())
          : std::nullopt;
  absl::StatusOr<Vm> vm;
  {
    absl::MutexLock lock(&hv_mu_);
    // Old VPs and VM first (KVM drops its references to guest memory), then
    // the memory is emptied, then the new VM maps it.
    vps_.clear();
    hv_.reset();
    if (absl::Status s = memory_->Discard(); !s.ok()) return s;
    vm = CreateVm();
    if (!vm.ok()) return vm.status();
    hv_ = std::move(vm->hv);
    vps_ = std::move(vm->vps);
  }
  if (synthetic_ != nullptr) {
    synthetic_->hv().Reset();
    for (auto& vp : vps_) {
      kvm_msr_entry tsc{};
      tsc.index = hvcore::kMsrIa32Tsc;
      tsc.data = *guest_tsc;
      if (absl::Status s = vp->SetMsrs({&tsc, 1}); !s.ok()) return s;
    }
    absl::StatusOr<int64_t> offset =
        SyntheticInterface::MeasureGuestTscOffset(*vps_[0]);
    if (!offset.ok()) return offset.status();
    synthetic_->SetGuestTscOffset(*offset);
  }
  vp_state_.reset(new VpState[vcpus_]);
  absl::MutexLock lock(&mu_);
  outcome_.reset();
  ran_ = false;
  boot_vp_prepared_ = false;
  finished_.store(false, std::memory_order_release);
  return absl::OkStatus();
}

absl::Status Partition::SetIrqLine(uint32_t gsi, bool level) {
  absl::Status s;
  {
    absl::ReaderMutexLock lock(&hv_mu_);
    if (hv_ == nullptr) {
      return absl::FailedPreconditionError(
          "SetIrqLine: the partition is being reset");
    }
    s = hv_->SetIrqLine(gsi, level);
  }
  if (!s.ok() && irq_errors_logged_.fetch_add(1) < 16) {
    spdlog::warn("partition: {}", std::string(s.message()));
  }
  return s;
}

absl::Status Partition::SignalMsi(uint64_t address, uint32_t data) {
  absl::Status s;
  {
    absl::ReaderMutexLock lock(&hv_mu_);
    if (hv_ == nullptr) {
      return absl::FailedPreconditionError(
          "SignalMsi: the partition is being reset");
    }
    s = hv_->SignalMsi({address, data});
  }
  if (!s.ok() && irq_errors_logged_.fetch_add(1) < 16) {
    spdlog::warn("partition: {}", std::string(s.message()));
  }
  return s;
}

absl::StatusOr<InterruptLine> Partition::GetInterruptLine(uint32_t gsi) {
  if (gsi >= hvcore::kIoApicPins) {
    return absl::InvalidArgumentError(absl::StrCat(
        "interrupt line: GSI ", gsi, " is not 0-", hvcore::kIoApicPins - 1));
  }
  return InterruptLine(this, gsi);
}

absl::Status Partition::PrepareBootVp(uint64_t entry_rip,
                                      uint64_t zero_page_gpa) {
  absl::StatusOr<std::span<uint8_t>> low =
      memory_->GetSpan(0, hvcore::kBootReservedEnd);
  if (!low.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "long-mode boot needs RAM below 0x",
        absl::Hex(hvcore::kBootReservedEnd), ": ", low.status().message()));
  }
  // The identity map covers [0, 4 GiB): entry and zero page must be RAM inside
  // it.
  if (entry_rip >= hvcore::kBootIdentityMapBytes ||
      !memory_->Contains(entry_rip, 1)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "entry point 0x%x is not in guest RAM below 4 GiB", entry_rip));
  }
  if (zero_page_gpa >= hvcore::kBootIdentityMapBytes ||
      !memory_->Contains(zero_page_gpa, hvcore::kBootZeroPageSize)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "zero page 0x%x is not in guest RAM below 4 GiB", zero_page_gpa));
  }
  if (absl::Status s = vps_[0]->SetupLongMode(*low, entry_rip, zero_page_gpa);
      !s.ok())
    return s;
  absl::MutexLock lock(&mu_);
  boot_vp_prepared_ = true;
  return absl::OkStatus();
}

absl::Status Partition::PrepareBootVpProtectedMode(uint32_t entry_eip,
                                                   uint32_t ebx_value) {
  absl::StatusOr<std::span<uint8_t>> low =
      memory_->GetSpan(0, hvcore::kBootReservedEnd);
  if (!low.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "protected-mode boot needs RAM below 0x",
        absl::Hex(hvcore::kBootReservedEnd), ": ", low.status().message()));
  }
  if (!memory_->Contains(entry_eip, 1)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "entry point 0x%x is not in guest RAM below 4 GiB", entry_eip));
  }
  if (absl::Status s = vps_[0]->SetupProtectedMode(*low, entry_eip, ebx_value);
      !s.ok())
    return s;
  absl::MutexLock lock(&mu_);
  boot_vp_prepared_ = true;
  return absl::OkStatus();
}

void Partition::Finish(RunOutcome::Kind kind, std::string detail) {
  {
    absl::MutexLock lock(&mu_);
    if (outcome_.has_value()) return;
    spdlog::info("partition: {}: {}", std::string(RunOutcomeKindName(kind)),
                 detail);
    outcome_ = RunOutcome{kind, std::move(detail)};
    finished_.store(true, std::memory_order_release);
  }
  KickAllVps();
}

void Partition::RequestPowerOff(absl::string_view reason) {
  Finish(RunOutcome::Kind::kPowerOff, std::string(reason));
}

void Partition::RequestStop(absl::string_view reason) {
  Finish(RunOutcome::Kind::kStopped, std::string(reason));
}

void Partition::RequestReboot(absl::string_view reason) {
  Finish(RunOutcome::Kind::kReboot, std::string(reason));
}

void Partition::RequestCrash(absl::string_view detail) {
  Finish(RunOutcome::Kind::kCrashed, std::string(detail));
}

absl::StatusOr<RunOutcome> Partition::Run() {
  {
    absl::MutexLock lock(&mu_);
    if (ran_)
      return absl::FailedPreconditionError(
          "Partition::Run may only be called once (per Reset)");
    if (!boot_vp_prepared_) {
      return absl::FailedPreconditionError(
          "the boot VP has no start state; call PrepareBootVp or "
          "PrepareBootVpProtectedMode first");
    }
    ran_ = true;
    running_ = true;
  }
  // Every VP gets a thread: VP 0 starts at its entry state; the application
  // processors block inside KVM_RUN until the guest sends INIT/SIPI.
  std::vector<std::thread> threads;
  threads.reserve(vps_.size());
  for (uint32_t i = 0; i < vps_.size(); ++i) {
    threads.emplace_back([this, i] { VpLoop(i); });
  }
  for (std::thread& t : threads) t.join();
  absl::MutexLock lock(&mu_);
  running_ = false;
  return *outcome_;  // every VpLoop exit path goes through Finish()
}

void Partition::VpLoop(uint32_t index) {
  // RequestStop() kicks VP threads out of KVM_RUN with this signal; it must not
  // be blocked here even if the thread that called Run() blocks it (e.g. for a
  // signalfd).
  sigset_t kick;
  sigemptyset(&kick);
  sigaddset(&kick, hvcore::VpKickSignal());
  pthread_sigmask(SIG_UNBLOCK, &kick, nullptr);
  if (config_.on_vp_thread_start) {
    if (absl::Status s = config_.on_vp_thread_start(index); !s.ok()) {
      Finish(RunOutcome::Kind::kCrashed,
             absl::StrCat("vp", index, " thread start: ", s.message()));
      return;
    }
  }

  hvcore::VirtualProcessor& vp = *vps_[index];
  VpState& state = vp_state_[index];
  {
    clockid_t clock;
    absl::MutexLock lock(&state.cpu_mu);
    if (pthread_getcpuclockid(pthread_self(), &clock) == 0)
      state.cpu_clock = clock;
  }
  // Whichever way the loop ends, keep the thread's final CPU time.
  absl::Cleanup record_cpu = [&state] {
    absl::MutexLock lock(&state.cpu_mu);
    if (state.cpu_clock.has_value()) {
      timespec ts{};
      if (clock_gettime(*state.cpu_clock, &ts) == 0)
        state.cpu_ns_final = uint64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
    }
    state.cpu_clock.reset();
  };
  while (!finished()) {
    if (pause_hint_.load(std::memory_order_acquire)) {
      HoldWhilePaused(index);
      continue;  // Finished meanwhile?
    }
    absl::StatusOr<hvcore::Intercept> intercept = vp.Run();
    if (!intercept.ok()) {
      Finish(RunOutcome::Kind::kCrashed,
             std::string(intercept.status().message()));
      return;
    }
    state.exits[intercept->index()].fetch_add(1, std::memory_order_relaxed);
    if (!HandleIntercept(index, *intercept)) return;
  }
}

bool Partition::HandleIntercept(uint32_t index, hvcore::Intercept& intercept) {
  auto crash = [&] {
    Finish(
        RunOutcome::Kind::kCrashed,
        absl::StrCat("vp", index, ": ", hvcore::DescribeIntercept(intercept)));
    return false;
  };
  if (auto* read = std::get_if<hvcore::MsrRead>(&intercept)) {
    // Only the synthetic range is filtered; without the interface, #GP.
    if (synthetic_ != nullptr) synthetic_->HandleMsrRead(index, *read);
    return true;
  }
  if (auto* write = std::get_if<hvcore::MsrWrite>(&intercept)) {
    if (synthetic_ != nullptr) synthetic_->HandleMsrWrite(index, *write);
    return true;
  }
  if (auto* io = std::get_if<hvcore::PortIo>(&intercept)) {
    if (synthetic_ != nullptr) {
      absl::StatusOr<bool> hypercall =
          synthetic_->MaybeHandleHypercall(*vps_[index], *io);
      if (!hypercall.ok()) {
        Finish(RunOutcome::Kind::kCrashed,
               absl::StrCat("vp", index,
                            ": hypercall: ", hypercall.status().message()));
        return false;
      }
      if (*hypercall) return true;
    }
    // INS/OUTS arrive as `count` elements; the port stays the same for each.
    for (uint32_t i = 0; i < io->count; ++i) {
      std::span<uint8_t> elem =
          io->data.subspan(size_t{i} * io->size, io->size);
      if (io->is_write) {
        uint32_t value = 0;
        std::memcpy(&value, elem.data(), io->size);
        io_.PortWrite(io->port, io->size, value);
      } else {
        uint32_t value = io_.PortRead(io->port, io->size);
        std::memcpy(elem.data(), &value, io->size);
      }
    }
    return true;
  }
  if (auto* m = std::get_if<hvcore::Mmio>(&intercept)) {
    if (m->is_write) {
      io_.MmioWrite(m->gpa, m->data);
    } else {
      io_.MmioRead(m->gpa, m->data);
    }
    return true;
  }
  if (std::holds_alternative<hvcore::Interrupted>(intercept))
    return true;  // loop rechecks
  if (std::holds_alternative<hvcore::Halt>(intercept)) {
    // Only without an in-kernel irqchip (vid always creates one, so HLT
    // blocks in the kernel instead): nothing could wake the VP; park it until
    // the partition ends. Not a crash: Linux halts on purpose, e.g. after a
    // panic.
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](std::optional<RunOutcome>* o) { return o->has_value(); },
        &outcome_));
    return false;
  }
  if (auto* ev = std::get_if<hvcore::SystemEvent>(&intercept)) {
    switch (ev->type) {
      case KVM_SYSTEM_EVENT_SHUTDOWN:
        Finish(RunOutcome::Kind::kPowerOff,
               absl::StrCat("vp", index, ": KVM shutdown event"));
        return false;
      case KVM_SYSTEM_EVENT_RESET:
        Finish(RunOutcome::Kind::kReboot,
               absl::StrCat("vp", index, ": KVM reset event"));
        return false;
      case KVM_SYSTEM_EVENT_CRASH:
        return crash();
      default:
        spdlog::warn("vp{}: ignoring {}", index,
                     hvcore::DescribeIntercept(intercept));
        return true;
    }
  }
  if (std::holds_alternative<hvcore::Shutdown>(intercept)) {
    // A triple fault resets a PC (the chipset turns the shutdown cycle into
    // INIT/reset); guests rely on it to reboot.
    Finish(RunOutcome::Kind::kReboot,
           absl::StrCat("vp", index, ": ", hvcore::DescribeIntercept(intercept),
                        "; a triple fault resets the machine"));
    return false;
  }
  if (auto* ef = std::get_if<hvcore::EmulationFailure>(&intercept)) {
    absl::StatusOr<bool> completed =
        vps_[index]->CompleteRejectedInstruction(*ef);
    if (completed.ok() && *completed) {
      vp_state_[index].completed.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    if (!completed.ok()) {
      Finish(RunOutcome::Kind::kCrashed,
             absl::StrCat(
                 "vp", index, ": ", hvcore::DescribeIntercept(intercept),
                 "; completing it failed: ", completed.status().message()));
      return false;
    }
    return crash();
  }
  // InternalError, FailEntry, Unknown.
  return crash();
}

void Partition::HoldWhilePaused(uint32_t index) {
  struct Waiter {
    Partition* p;
    uint32_t index;
  } waiter{this, index};
  auto wake = +[](Waiter* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    Partition* p = w->p;
    return !p->pause_requested_ || p->outcome_.has_value() ||
           (p->vp_task_ != nullptr && !p->vp_task_done_[w->index]);
  };
  absl::MutexLock lock(&mu_);
  ++held_vps_;
  while (true) {
    mu_.Await(absl::Condition(wake, &waiter));
    if (vp_task_ == nullptr || vp_task_done_[index] || !pause_requested_ ||
        outcome_.has_value()) {
      break;
    }
    // A task for the held VPs (RunOnEachVp): run it here, on the VP's own
    // thread (its seccomp filter allows the vCPU ioctls), still held.
    const std::function<absl::Status(uint32_t)>* task = vp_task_;
    mu_.Unlock();
    absl::Status s = (*task)(index);
    mu_.Lock();
    vp_task_status_[index] = std::move(s);
    vp_task_done_[index] = true;
  }
  --held_vps_;
}

bool Partition::SetPauseRequestedLocked() {
  if (pause_requested_ && held_vps_ == vcpus_) return false;
  pause_requested_ = true;
  pause_hint_.store(true, std::memory_order_release);
  return true;
}

void Partition::KickAllVps() {
  absl::ReaderMutexLock lock(&hv_mu_);
  for (auto& vp : vps_) vp->RequestExit();
}

void Partition::RequestPause() {
  {
    absl::MutexLock lock(&mu_);
    if (!running_ || outcome_.has_value()) return;
    if (!SetPauseRequestedLocked()) return;
  }
  KickAllVps();
}

absl::Status Partition::Pause(absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    if (!running_ || outcome_.has_value()) {
      return absl::FailedPreconditionError(
          "the partition is not running, so it cannot be paused");
    }
    if (!SetPauseRequestedLocked()) return absl::OkStatus();
  }
  KickAllVps();
  absl::MutexLock lock(&mu_);
  auto all_held = [](Partition* p) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return p->held_vps_ == p->vcpus_ || p->outcome_.has_value();
  };
  const bool done =
      mu_.AwaitWithTimeout(absl::Condition(+all_held, this), timeout);
  if (outcome_.has_value()) {
    return absl::FailedPreconditionError(
        "the partition ended while it was being paused");
  }
  if (!done) {
    pause_requested_ = false;
    pause_hint_.store(false, std::memory_order_release);
    return absl::DeadlineExceededError(absl::StrCat(
        "only ", held_vps_, " of ", vcpus_, " VP(s) stopped within ",
        absl::FormatDuration(timeout), "; the partition keeps running"));
  }
  return absl::OkStatus();
}

void Partition::Resume() {
  absl::MutexLock lock(&mu_);
  pause_requested_ = false;
  pause_hint_.store(false, std::memory_order_release);
}

bool Partition::paused() const {
  absl::MutexLock lock(&mu_);
  return pause_requested_ && held_vps_ == vcpus_;
}

std::vector<VpStats> Partition::GetVpStats() const {
  std::vector<VpStats> out;
  for (uint32_t i = 0; i < vcpus_; ++i) {
    VpStats s;
    s.vp = i;
    for (size_t k = 0; k < kNumInterceptKinds; ++k) {
      s.exits[k] = vp_state_[i].exits[k].load(std::memory_order_relaxed);
      s.total_exits += s.exits[k];
    }
    s.completed_instructions =
        vp_state_[i].completed.load(std::memory_order_relaxed);
    {
      const VpState& state = vp_state_[i];
      absl::MutexLock lock(&state.cpu_mu);
      s.cpu_time_ns = state.cpu_ns_final;
      timespec ts{};
      if (state.cpu_clock.has_value() &&
          clock_gettime(*state.cpu_clock, &ts) == 0) {
        s.cpu_time_ns = uint64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
      }
    }
    out.push_back(s);
  }
  return out;
}

}  // namespace vid
