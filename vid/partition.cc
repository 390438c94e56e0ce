#include "vid/partition.h"

#include <pthread.h>
#include <signal.h>

#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"

namespace vid {

absl::string_view RunOutcomeKindName(RunOutcome::Kind kind) {
  switch (kind) {
    case RunOutcome::Kind::kPowerOff:
      return "power_off";
    case RunOutcome::Kind::kCrashed:
      return "crashed";
    case RunOutcome::Kind::kStopped:
      return "stopped";
  }
  return "unknown";
}

Partition::Partition(std::unique_ptr<hvcore::Partition> hv,
                     std::unique_ptr<GuestMemory> memory,
                     std::vector<std::unique_ptr<hvcore::VirtualProcessor>> vps)
    : memory_(std::move(memory)),
      hv_(std::move(hv)),
      vps_(std::move(vps)),
      vp_state_(new VpState[vps_.size()]) {}

// Members are destroyed in reverse order: VPs (vcpu fds, kvm_run), then the VM
// fd, then the guest memory KVM had mapped (see the member declarations).
Partition::~Partition() = default;

absl::StatusOr<std::unique_ptr<Partition>> Partition::Create(
    const PartitionConfig& config, base::ScopedFd kvm_fd) {
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Adopt(std::move(kvm_fd));
  if (!kvm.ok()) return kvm.status();
  return Create(config, **kvm);
}

absl::StatusOr<std::unique_ptr<Partition>> Partition::Create(
    const PartitionConfig& config, const hvcore::KvmSystem& kvm) {
  if (config.vcpus == 0 ||
      (kvm.max_vcpus() > 0 && config.vcpus > uint32_t(kvm.max_vcpus()))) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d VPs requested; this host's KVM allows 1 to %d",
                        config.vcpus, kvm.max_vcpus()));
  }
  absl::StatusOr<std::unique_ptr<GuestMemory>> memory =
      GuestMemory::Create(config.memory_bytes);
  if (!memory.ok()) return memory.status();
  absl::StatusOr<std::unique_ptr<hvcore::Partition>> hv =
      hvcore::Partition::Create(kvm);
  if (!hv.ok()) return hv.status();
  for (const GuestMemory::Region& r : (*memory)->regions()) {
    absl::StatusOr<uint32_t> slot = (*hv)->MapUserMemory(r.gpa, r.size, r.host);
    if (!slot.ok()) return slot.status();
  }
  std::vector<std::unique_ptr<hvcore::VirtualProcessor>> vps;
  for (uint32_t i = 0; i < config.vcpus; ++i) {
    absl::StatusOr<std::unique_ptr<hvcore::VirtualProcessor>> vp =
        (*hv)->CreateVp(i);
    if (!vp.ok()) return vp.status();
    vps.push_back(std::move(*vp));
  }
  return std::unique_ptr<Partition>(
      new Partition(std::move(*hv), std::move(*memory), std::move(vps)));
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
  vp_state_[0].prepared = true;
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
  for (auto& vp : vps_) vp->RequestExit();
}

void Partition::RequestPowerOff(absl::string_view reason) {
  Finish(RunOutcome::Kind::kPowerOff, std::string(reason));
}

void Partition::RequestStop(absl::string_view reason) {
  Finish(RunOutcome::Kind::kStopped, std::string(reason));
}

absl::StatusOr<RunOutcome> Partition::Run() {
  std::vector<uint32_t> runnable;
  {
    absl::MutexLock lock(&mu_);
    if (ran_)
      return absl::FailedPreconditionError(
          "Partition::Run may only be called once");
    ran_ = true;
  }
  for (uint32_t i = 0; i < vps_.size(); ++i) {
    if (vp_state_[i].prepared) runnable.push_back(i);
  }
  if (runnable.empty()) {
    return absl::FailedPreconditionError(
        "no VP has a start state; call PrepareBootVp first");
  }
  std::vector<std::thread> threads;
  threads.reserve(runnable.size());
  for (uint32_t i : runnable) threads.emplace_back([this, i] { VpLoop(i); });
  for (std::thread& t : threads) t.join();
  absl::MutexLock lock(&mu_);
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

  hvcore::VirtualProcessor& vp = *vps_[index];
  VpState& state = vp_state_[index];
  while (!finished()) {
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
  if (auto* io = std::get_if<hvcore::PortIo>(&intercept)) {
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
    // No in-kernel irqchip yet, so nothing can wake a halted VP: park it until
    // the partition ends (stop, power-off from another VP, or a crash
    // elsewhere). Not a crash: Linux halts on purpose, e.g. after a panic.
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
        Finish(RunOutcome::Kind::kPowerOff,
               absl::StrCat(
                   "vp", index,
                   ": guest requested reset; reboot is not supported yet, "
                   "treated as power off"));
        return false;
      case KVM_SYSTEM_EVENT_CRASH:
        return crash();
      default:
        spdlog::warn("vp{}: ignoring {}", index,
                     hvcore::DescribeIntercept(intercept));
        return true;
    }
  }
  // Shutdown (triple fault), EmulationFailure, InternalError, FailEntry,
  // Unknown.
  return crash();
}

std::vector<VpStats> Partition::GetVpStats() const {
  std::vector<VpStats> out;
  for (uint32_t i = 0; i < vps_.size(); ++i) {
    VpStats s;
    s.vp = i;
    for (size_t k = 0; k < kNumInterceptKinds; ++k) {
      s.exits[k] = vp_state_[i].exits[k].load(std::memory_order_relaxed);
      s.total_exits += s.exits[k];
    }
    out.push_back(s);
  }
  return out;
}

}  // namespace vid
