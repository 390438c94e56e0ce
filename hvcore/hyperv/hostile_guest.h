#ifndef HVSTACK_HVCORE_HYPERV_HOSTILE_GUEST_H_
#define HVSTACK_HVCORE_HYPERV_HOSTILE_GUEST_H_

// Drives an HvPartition with a byte script that plays a hostile guest (MSR
// writes and reads across the whole synthetic range, hypercalls with any
// control word and GPA, scribbles over the SynIC pages) interleaved with
// host posts, signals and EOMs. Checks the invariants a guest must never be
// able to break. Shared by the randomized test and the libFuzzer target.

#include <cstdint>
#include <span>

#include "hvcore/hyperv/hv_stats.h"

namespace hvcore::hyperv {

// Runs one script; aborts (via a failed check) if an invariant breaks.
// Returns the partition's stats, so tests can see how deep scripts reach.
HvStatsSnapshot RunHostileGuestScript(std::span<const uint8_t> script);

}  // namespace hvcore::hyperv

#endif  // HVSTACK_HVCORE_HYPERV_HOSTILE_GUEST_H_
