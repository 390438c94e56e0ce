// Partition::SaveState / CheckCompatible / RestoreState: the in-kernel PIC,
// IOAPIC, PIT and kvmclock, and the compatibility checks a restore makes.

#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hvcore/cpuid.h"
#include "hvcore/kvm_abi.h"
#include "hvcore/partition.h"

namespace hvcore {
namespace {

template <typename T>
std::string Bytes(const T& value) {
  return std::string(reinterpret_cast<const char*>(&value), sizeof(T));
}

// Copies a saved structure back, refusing any other size.
template <typename T>
absl::Status FromBytes(const std::string& bytes, absl::string_view what,
                       T* out) {
  if (bytes.size() != sizeof(T)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "saved %s has %d bytes, expected %d", what, bytes.size(), sizeof(T)));
  }
  std::memcpy(out, bytes.data(), sizeof(T));
  return absl::OkStatus();
}

constexpr struct {
  uint32_t chip_id;
  const char* name;
} kChips[] = {{KVM_IRQCHIP_PIC_MASTER, "master PIC"},
              {KVM_IRQCHIP_PIC_SLAVE, "slave PIC"},
              {KVM_IRQCHIP_IOAPIC, "IOAPIC"}};

}  // namespace

absl::StatusOr<hvstack::saved::PartitionState> Partition::SaveState(
    std::span<const kvm_cpuid_entry2> vp0_cpuid) const {
  {
    absl::MutexLock lock(&mu_);
    if (!irqchip_created_) {
      return absl::FailedPreconditionError(
          "saving a partition needs its in-kernel irqchip (create the VPs "
          "first)");
    }
  }
  hvstack::saved::PartitionState out;
  out.set_version(kStateVersion);
  out.set_vcpu_count(vcpu_count_);
  out.set_tsc_khz(tsc_khz());
  out.set_cpuid(std::string(reinterpret_cast<const char*>(vp0_cpuid.data()),
                            vp0_cpuid.size_bytes()));
  const int vm = vm_fd_.get();
  for (const auto& chip : kChips) {
    kvm_irqchip c{};
    c.chip_id = chip.chip_id;
    if (::ioctl(vm, KVM_GET_IRQCHIP, &c) < 0) {
      return absl::ErrnoToStatus(
          errno, absl::StrCat("KVM_GET_IRQCHIP (", chip.name, ") failed"));
    }
    std::string bytes = Bytes(c);
    switch (chip.chip_id) {
      case KVM_IRQCHIP_PIC_MASTER:
        out.set_pic_master(std::move(bytes));
        break;
      case KVM_IRQCHIP_PIC_SLAVE:
        out.set_pic_slave(std::move(bytes));
        break;
      default:
        out.set_ioapic(std::move(bytes));
        break;
    }
  }
  kvm_pit_state2 pit{};
  if (::ioctl(vm, KVM_GET_PIT2, &pit) < 0) {
    return absl::ErrnoToStatus(errno, "KVM_GET_PIT2 failed");
  }
  out.set_pit(Bytes(pit));
  kvm_clock_data clock{};
  if (::ioctl(vm, KVM_GET_CLOCK, &clock) < 0) {
    return absl::ErrnoToStatus(errno, "KVM_GET_CLOCK failed");
  }
  out.set_kvmclock_ns(clock.clock);
  return out;
}

absl::Status Partition::CheckCompatible(
    const hvstack::saved::PartitionState& saved,
    std::span<const kvm_cpuid_entry2> vp0_cpuid) const {
  if (saved.version() == 0 || saved.version() > kStateVersion) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "partition state format version %d; this worker reads 1 to %d",
        saved.version(), kStateVersion));
  }
  if (saved.vcpu_count() != vcpu_count_) {
    return absl::FailedPreconditionError(
        absl::StrFormat("vcpus: the saved state has %d, the VM now has %d",
                        saved.vcpu_count(), vcpu_count_));
  }
  if (saved.vps_size() != static_cast<int>(vcpu_count_)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("the saved state holds %d VP(s) for %d vcpus",
                        saved.vps_size(), saved.vcpu_count()));
  }
  const uint32_t khz = tsc_khz();
  if (saved.tsc_khz() != khz) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "TSC frequency: the saved guest ran at %d kHz, this host's KVM gives "
        "%d kHz",
        saved.tsc_khz(), khz));
  }
  if (saved.cpuid().size() % sizeof(kvm_cpuid_entry2) != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("saved CPUID table of %d bytes is not a whole number "
                        "of %d-byte entries",
                        saved.cpuid().size(), sizeof(kvm_cpuid_entry2)));
  }
  std::vector<kvm_cpuid_entry2> table(saved.cpuid().size() /
                                      sizeof(kvm_cpuid_entry2));
  std::memcpy(table.data(), saved.cpuid().data(), saved.cpuid().size());
  if (absl::Status s = CompareCpuid(table, vp0_cpuid); !s.ok()) return s;
  return absl::OkStatus();
}

absl::Status Partition::RestoreState(
    const hvstack::saved::PartitionState& saved) {
  if (absl::Status s = CreateIrqchip(); !s.ok()) return s;
  const int vm = vm_fd_.get();
  const std::string* bytes[] = {&saved.pic_master(), &saved.pic_slave(),
                                &saved.ioapic()};
  for (size_t i = 0; i < 3; ++i) {
    kvm_irqchip c{};
    if (absl::Status s = FromBytes(*bytes[i], kChips[i].name, &c); !s.ok())
      return s;
    if (c.chip_id != kChips[i].chip_id) {
      return absl::InvalidArgumentError(
          absl::StrFormat("saved %s has chip id %d, expected %d",
                          kChips[i].name, c.chip_id, kChips[i].chip_id));
    }
    if (::ioctl(vm, KVM_SET_IRQCHIP, &c) < 0) {
      return absl::ErrnoToStatus(
          errno, absl::StrCat("KVM_SET_IRQCHIP (", kChips[i].name,
                              ") refused the saved state"));
    }
  }
  kvm_pit_state2 pit{};
  if (absl::Status s = FromBytes(saved.pit(), "PIT", &pit); !s.ok()) return s;
  if (::ioctl(vm, KVM_SET_PIT2, &pit) < 0) {
    return absl::ErrnoToStatus(errno,
                               "KVM_SET_PIT2 refused the saved PIT state");
  }
  kvm_clock_data clock{};
  clock.clock = saved.kvmclock_ns();
  if (::ioctl(vm, KVM_SET_CLOCK, &clock) < 0) {
    return absl::ErrnoToStatus(errno, "KVM_SET_CLOCK failed");
  }
  return absl::OkStatus();
}

}  // namespace hvcore
