// vid::Partition save and restore (issue 14).

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hvcore/msr.h"
#include "spdlog/spdlog.h"
#include "vid/partition.h"

namespace vid {

absl::Status Partition::RunOnEachVp(
    const std::function<absl::Status(uint32_t)>& fn) {
  {
    absl::MutexLock lock(&mu_);
    if (running_) {
      if (!(pause_requested_ && held_vps_ == vcpus_) || outcome_.has_value()) {
        return absl::FailedPreconditionError(
            "the partition is running: pause it first");
      }
      if (vp_task_ != nullptr) {
        return absl::FailedPreconditionError(
            "another operation on the held VPs is in progress");
      }
      vp_task_ = &fn;
      vp_task_done_.assign(vcpus_, false);
      vp_task_status_.assign(vcpus_, absl::OkStatus());
      auto all_done = +[](Partition* p) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        if (p->outcome_.has_value()) return true;
        for (bool done : p->vp_task_done_) {
          if (!done) return false;
        }
        return true;
      };
      mu_.Await(absl::Condition(all_done, this));
      vp_task_ = nullptr;
      for (uint32_t i = 0; i < vcpus_; ++i) {
        if (!vp_task_done_[i]) {
          return absl::FailedPreconditionError(absl::StrCat(
              "the partition ended before vp", i, " could be read"));
        }
        if (!vp_task_status_[i].ok()) return vp_task_status_[i];
      }
      return absl::OkStatus();
    }
  }
  // No VP threads: the VPs are idle, read them here.
  for (uint32_t i = 0; i < vcpus_; ++i) {
    if (absl::Status s = fn(i); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<hvstack::saved::VidPartitionState> Partition::SaveState() {
  std::vector<hvstack::saved::VpState> vps(vcpus_);
  std::vector<kvm_cpuid_entry2> cpuid;
  absl::Status s = RunOnEachVp([&](uint32_t i) -> absl::Status {
    hvcore::VirtualProcessor& vp = *vps_[i];
    absl::StatusOr<hvstack::saved::VpState> state = vp.SaveState();
    if (!state.ok()) return state.status();
    vps[i] = *std::move(state);
    if (i == 0) {
      absl::StatusOr<std::vector<kvm_cpuid_entry2>> c = vp.GetCpuid();
      if (!c.ok()) return c.status();
      cpuid = *std::move(c);
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  hvstack::saved::VidPartitionState out;
  out.set_version(kStateVersion);
  out.set_vcpus(vcpus_);
  out.set_memory_bytes(memory_->size());
  out.set_enlightened(synthetic_ != nullptr);
  absl::StatusOr<hvstack::saved::PartitionState> kvm;
  {
    absl::ReaderMutexLock lock(&hv_mu_);
    kvm = hv_->SaveState(cpuid);
  }
  if (!kvm.ok()) return kvm.status();
  *out.mutable_kvm() = *std::move(kvm);
  for (hvstack::saved::VpState& vp : vps) *out.mutable_kvm()->add_vps() = vp;
  if (synthetic_ != nullptr) {
    *out.mutable_hyperv() =
        synthetic_->hv().SaveState(synthetic_->ReadGuestTsc());
  }
  return out;
}

absl::StatusOr<MemorySaveStats> Partition::SaveMemory(int fd,
                                                      const SaveId& save_id) {
  {
    absl::MutexLock lock(&mu_);
    if (running_ && !(pause_requested_ && held_vps_ == vcpus_)) {
      return absl::FailedPreconditionError(
          "the partition is running: pause it first");
    }
  }
  return WriteMemoryFile(*memory_, fd, save_id);
}

absl::StatusOr<std::unique_ptr<Partition>> Partition::Restore(
    const PartitionConfig& config, const hvcore::KvmSystem& kvm,
    const hvstack::saved::VidPartitionState& state,
    std::unique_ptr<GuestMemory> memory) {
  if (state.version() == 0 || state.version() > kStateVersion) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "partition state format version %d; this worker reads 1 to %d",
        state.version(), kStateVersion));
  }
  if (state.vcpus() != config.vcpus) {
    return absl::FailedPreconditionError(
        absl::StrFormat("vcpus: the saved VM had %d, its configuration now "
                        "says %d",
                        state.vcpus(), config.vcpus));
  }
  if (state.memory_bytes() != config.memory_bytes) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "memory: the saved VM had %d MiB, its configuration now says %d MiB",
        state.memory_bytes() >> 20, config.memory_bytes >> 20));
  }
  if (state.enlightened() != config.enlightened) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "enlightenments: the saved VM ran %s them, its configuration now "
        "%s them",
        state.enlightened() ? "with" : "without",
        config.enlightened ? "enables" : "disables"));
  }
  absl::StatusOr<std::unique_ptr<Partition>> p =
      CreateWith(config, kvm, std::move(memory));
  if (!p.ok()) return p.status();
  if (absl::Status s = (*p)->RestoreFrom(state); !s.ok()) return s;
  return p;
}

absl::Status Partition::RestoreFrom(
    const hvstack::saved::VidPartitionState& state) {
  absl::StatusOr<std::vector<kvm_cpuid_entry2>> cpuid = vps_[0]->GetCpuid();
  if (!cpuid.ok()) return cpuid.status();
  if (absl::Status s = hv_->CheckCompatible(state.kvm(), *cpuid); !s.ok())
    return s;
  if (absl::Status s = hv_->RestoreState(state.kvm()); !s.ok()) return s;
  for (uint32_t i = 0; i < vcpus_; ++i) {
    if (absl::Status s = vps_[i]->RestoreState(state.kvm().vps(i)); !s.ok())
      return s;
  }
  if (synthetic_ != nullptr) {
    if (!state.has_hyperv()) {
      return absl::InvalidArgumentError(
          "the saved state of an enlightened VM has no Hyper-V state");
    }
    // The guest TSC is what the VPs' IA32_TSC made it (or, on a host that
    // ignores that write, the host's): measure it again, then continue the
    // reference clock from its saved reading at today's guest TSC.
    absl::StatusOr<int64_t> offset =
        SyntheticInterface::MeasureGuestTscOffset(*vps_[0]);
    if (!offset.ok()) return offset.status();
    synthetic_->SetGuestTscOffset(*offset);
    if (absl::Status s = synthetic_->hv().RestoreState(
            state.hyperv(), synthetic_->ReadGuestTsc());
        !s.ok()) {
      return s;
    }
  }
  absl::MutexLock lock(&mu_);
  boot_vp_prepared_ = true;
  return absl::OkStatus();
}

}  // namespace vid
