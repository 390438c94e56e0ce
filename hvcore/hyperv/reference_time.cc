#include "hvcore/hyperv/reference_time.h"

#include "absl/strings/str_format.h"
#include "hvcore/hyperv/tlfs.h"

namespace hvcore::hyperv {

absl::StatusOr<uint64_t> ReferenceTscScale(uint64_t tsc_hz) {
  if (tsc_hz <= kReferenceHz) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "TSC frequency %d Hz is too low for a 10 MHz reference clock", tsc_hz));
  }
  const unsigned __int128 numerator =
      static_cast<unsigned __int128>(kReferenceHz) << 64;
  return static_cast<uint64_t>(numerator / tsc_hz);
}

absl::StatusOr<ReferenceClock> ReferenceClock::Create(uint64_t tsc_hz,
                                                      uint64_t tsc_at_start) {
  absl::StatusOr<uint64_t> scale = ReferenceTscScale(tsc_hz);
  if (!scale.ok()) return scale.status();
  const uint64_t start_ticks = ScaleTsc(tsc_at_start, *scale);
  return ReferenceClock(tsc_hz, *scale, static_cast<int64_t>(0 - start_ticks));
}

absl::StatusOr<ReferenceClock> ReferenceClock::ContinueAt(
    uint64_t tsc_hz, uint64_t tsc, uint64_t reference_time) {
  absl::StatusOr<uint64_t> scale = ReferenceTscScale(tsc_hz);
  if (!scale.ok()) return scale.status();
  return ReferenceClock(
      tsc_hz, *scale,
      static_cast<int64_t>(reference_time - ScaleTsc(tsc, *scale)));
}

}  // namespace hvcore::hyperv
