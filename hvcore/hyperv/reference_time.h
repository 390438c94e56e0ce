#ifndef HVSTACK_HVCORE_HYPERV_REFERENCE_TIME_H_
#define HVSTACK_HVCORE_HYPERV_REFERENCE_TIME_H_

// The partition reference clock: 100 ns ticks since the partition started,
// derived from the guest TSC with the same formula the guest uses on the
// reference TSC page, so HV_X64_MSR_TIME_REF_COUNT and the page can never
// disagree:  ref = ((tsc * scale) >> 64) + offset.

#include <cstdint>

#include "absl/status/statusor.h"

namespace hvcore::hyperv {

// floor(10^7 * 2^64 / tsc_hz): the 64.64 fixed-point number of 100 ns ticks
// per TSC tick. InvalidArgument unless tsc_hz > 10 MHz (the scale must fit
// in 64 bits, and a slower TSC has no use for a 100 ns clock anyway).
absl::StatusOr<uint64_t> ReferenceTscScale(uint64_t tsc_hz);

// The guest's multiply: the high 64 bits of the 128-bit product.
inline uint64_t ScaleTsc(uint64_t tsc, uint64_t scale) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(tsc) * scale) >>
                               64);
}

class ReferenceClock {
 public:
  // `tsc_at_start`: the guest TSC at the partition's time zero (usually the
  // value the VMM wrote to IA32_TSC when it created the vCPUs, i.e. 0).
  static absl::StatusOr<ReferenceClock> Create(uint64_t tsc_hz,
                                               uint64_t tsc_at_start);

  // A clock that reads `reference_time` at guest TSC `tsc`: how a restored
  // partition continues its saved clock (issue 14).
  static absl::StatusOr<ReferenceClock> ContinueAt(uint64_t tsc_hz,
                                                   uint64_t tsc,
                                                   uint64_t reference_time);

  uint64_t tsc_hz() const { return tsc_hz_; }
  uint64_t scale() const { return scale_; }
  // Two's complement: added modulo 2^64 by the guest.
  int64_t offset() const { return offset_; }

  // Reference time (100 ns units) at guest TSC `tsc`.
  uint64_t At(uint64_t tsc) const {
    return ScaleTsc(tsc, scale_) + static_cast<uint64_t>(offset_);
  }

 private:
  ReferenceClock(uint64_t tsc_hz, uint64_t scale, int64_t offset)
      : tsc_hz_(tsc_hz), scale_(scale), offset_(offset) {}

  uint64_t tsc_hz_;
  uint64_t scale_;
  int64_t offset_;
};

}  // namespace hvcore::hyperv

#endif  // HVSTACK_HVCORE_HYPERV_REFERENCE_TIME_H_
