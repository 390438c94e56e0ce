#include "vmwp/saved_vm.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace vmwp {

using hvstack::internal::WorkerConfig;

absl::StatusOr<hvstack::saved::SavedVm> CaptureVm(const VmParts& parts,
                                                  const WorkerConfig& config,
                                                  const vid::SaveId& save_id) {
  hvstack::saved::SavedVm out;
  out.set_save_id(std::string(save_id.begin(), save_id.end()));
  out.set_vm_uuid(config.vm_uuid());
  out.set_saved_at_us(absl::ToUnixMicros(absl::Now()));
  *out.mutable_config() = SavedConfigOf(config);
  absl::StatusOr<hvstack::saved::VidPartitionState> partition =
      parts.partition->SaveState();
  if (!partition.ok()) return partition.status();
  *out.mutable_partition() = *std::move(partition);
  *out.mutable_com1() = parts.com1->SaveState();
  *out.mutable_i8042() = parts.i8042->SaveState();
  *out.mutable_rtc() = parts.rtc->SaveState();
  *out.mutable_pm1_event() = parts.pm1_event->SaveState();
  *out.mutable_pm1_control() = parts.power->SaveState();
  if (parts.vmbus != nullptr) {
    absl::StatusOr<hvstack::saved::VmbusServerState> vmbus =
        parts.vmbus->SaveState();
    if (!vmbus.ok()) return vmbus.status();
    *out.mutable_vmbus() = *std::move(vmbus);
  }
  return out;
}

absl::Status RestoreParts(const VmParts& parts,
                          const hvstack::saved::SavedVm& saved) {
  auto in = [](absl::string_view what, absl::Status s) {
    return s.ok()
               ? s
               : absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
  };
  if (absl::Status s = in("COM1", parts.com1->RestoreState(saved.com1()));
      !s.ok())
    return s;
  if (absl::Status s = in("i8042", parts.i8042->RestoreState(saved.i8042()));
      !s.ok())
    return s;
  if (absl::Status s = in("CMOS RTC", parts.rtc->RestoreState(saved.rtc()));
      !s.ok())
    return s;
  if (absl::Status s = in("PM1a event block",
                          parts.pm1_event->RestoreState(saved.pm1_event()));
      !s.ok())
    return s;
  if (absl::Status s =
          in("PM1a control", parts.power->RestoreState(saved.pm1_control()));
      !s.ok())
    return s;
  if (parts.vmbus != nullptr) {
    if (!saved.has_vmbus()) {
      return absl::InvalidArgumentError(
          "the saved state of an enlightened VM has no VMBus state");
    }
    if (absl::Status s = in("VMBus", parts.vmbus->RestoreState(saved.vmbus()));
        !s.ok())
      return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<vid::SaveId> SaveIdOf(const hvstack::saved::SavedVm& saved) {
  vid::SaveId id;
  if (saved.save_id().size() != id.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "saved state: save id of %d bytes", saved.save_id().size()));
  }
  std::memcpy(id.data(), saved.save_id().data(), id.size());
  return id;
}

}  // namespace vmwp
