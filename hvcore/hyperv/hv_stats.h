#ifndef HVSTACK_HVCORE_HYPERV_HV_STATS_H_
#define HVSTACK_HVCORE_HYPERV_HV_STATS_H_

// Counters of what a guest did with the synthetic interface, and which of its
// requests we refused. The VMM logs them when a guest misbehaves or stops
// booting: "#GP on MSR 0x400000b0" or "hypercall 0x0013 -> INVALID_HYPERCALL_
// CODE" says at once which enlightenment the guest wanted. Bounded: the guest
// chooses the MSR indices and call codes.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace hvcore::hyperv {

struct HvStatsSnapshot {
  uint64_t msr_reads = 0;
  uint64_t msr_writes = 0;
  uint64_t msr_gp = 0;
  uint64_t hypercalls = 0;
  uint64_t hypercall_ud = 0;
  // Call code -> count, for the first kMaxDistinct codes seen; later codes
  // only count in `hypercalls`.
  std::map<uint16_t, uint64_t> calls_by_code;
  // HV_STATUS -> count, for every non-success result.
  std::map<uint16_t, uint64_t> failures_by_status;
  // Distinct MSR indices that got a #GP, in order of first sight, at most
  // kMaxDistinct.
  std::vector<uint32_t> gp_msrs;

  // One line for a log, e.g. "msr r=12 w=30 gp=1 [0x40000073] hypercalls=4
  // ud=0 codes{0x5c:3 0x13:1} failures{0x2:1}".
  std::string ToString() const;
};

class HvStats {
 public:
  static constexpr size_t kMaxDistinct = 32;

  void RecordMsr(uint32_t msr, bool write, bool gp);
  // `result` is ignored when `ud`.
  void RecordHypercall(uint16_t code, bool ud, uint64_t result);
  HvStatsSnapshot Snapshot() const;

 private:
  mutable absl::Mutex mu_;
  HvStatsSnapshot s_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hvcore::hyperv

#endif  // HVSTACK_HVCORE_HYPERV_HV_STATS_H_
