#ifndef HVSTACK_VMWP_VSP_IC_TIMESYNC_H_
#define HVSTACK_VMWP_VSP_IC_TIMESYNC_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "vmwp/vsp/ic/ic_framework.h"

namespace vsp::ic {

// ictimesync flags: SYNC is a hard request to set the clock (sent after boot
// or resume); SAMPLE is a hint the guest may use to discipline it.
inline constexpr uint8_t kTimeSyncFlagProbe = 0;
inline constexpr uint8_t kTimeSyncFlagSync = 1;
inline constexpr uint8_t kTimeSyncFlagSample = 2;

// 100 ns units between 1601-01-01 and 1970-01-01 (WLTIMEDELTA).
inline constexpr uint64_t kWindowsEpochDelta = 116444736000000000ull;

// Host time in 100 ns units since 1601 (UTC), the unit of parenttime.
uint64_t ToWindowsTime(absl::Time t);
absl::Time FromWindowsTime(uint64_t t);

// A time message for the negotiated service version: from 4.0 it carries the
// guest's reference counter (TIME_REF_COUNT, 100 ns) at `host_time`, so the
// guest can correct for delivery delay; before, parent time only.
std::vector<uint8_t> BuildTimeSample(absl::Time host_time,
                                     uint64_t reference_time, uint8_t flags,
                                     const IcVersions& versions);
absl::Status ParseTimeSyncResponse(std::span<const uint8_t> bytes);

}  // namespace vsp::ic

#endif  // HVSTACK_VMWP_VSP_IC_TIMESYNC_H_
