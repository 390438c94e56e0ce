#include "vmwp/vsp/ic/timesync.h"

#include "absl/strings/str_format.h"

namespace vsp::ic {

uint64_t ToWindowsTime(absl::Time t) {
  const int64_t units = absl::ToInt64Nanoseconds(t - absl::UnixEpoch()) / 100;
  if (units < -static_cast<int64_t>(kWindowsEpochDelta)) return 0;
  return static_cast<uint64_t>(units +
                               static_cast<int64_t>(kWindowsEpochDelta));
}

absl::Time FromWindowsTime(uint64_t t) {
  return absl::UnixEpoch() +
         absl::Nanoseconds(static_cast<int64_t>(t - kWindowsEpochDelta) * 100);
}

std::vector<uint8_t> BuildTimeSample(absl::Time host_time,
                                     uint64_t reference_time, uint8_t flags,
                                     const IcVersions& versions) {
  if (versions.message.major >= 4) {
    TimeSyncRefData d{};
    d.parenttime = ToWindowsTime(host_time);
    d.vmreferencetime = reference_time;
    d.flags = flags;
    return BuildIcRequest(kIcTimeSync, versions,
                          std::span<const uint8_t>(
                              reinterpret_cast<const uint8_t*>(&d), sizeof(d)));
  }
  TimeSyncData d{};
  d.parenttime = ToWindowsTime(host_time);
  d.flags = flags;
  return BuildIcRequest(kIcTimeSync, versions,
                        std::span<const uint8_t>(
                            reinterpret_cast<const uint8_t*>(&d), sizeof(d)));
}

absl::Status ParseTimeSyncResponse(std::span<const uint8_t> bytes) {
  absl::StatusOr<IcResponse> r = ParseIcResponse(bytes, kIcTimeSync);
  if (!r.ok()) return r.status();
  if (r->header.status != kHvSOk) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "time sample answered with status 0x%08x", r->header.status));
  }
  return absl::OkStatus();
}

}  // namespace vsp::ic
