#include "hvcore/hyperv/hv_stats.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace hvcore::hyperv {

void HvStats::RecordMsr(uint32_t msr, bool write, bool gp) {
  absl::MutexLock lock(&mu_);
  ++(write ? s_.msr_writes : s_.msr_reads);
  if (!gp) return;
  ++s_.msr_gp;
  if (s_.gp_msrs.size() < kMaxDistinct &&
      std::find(s_.gp_msrs.begin(), s_.gp_msrs.end(), msr) ==
          s_.gp_msrs.end()) {
    s_.gp_msrs.push_back(msr);
  }
}

void HvStats::RecordHypercall(uint16_t code, bool ud, uint64_t result) {
  absl::MutexLock lock(&mu_);
  ++s_.hypercalls;
  if (ud) {
    ++s_.hypercall_ud;
    return;
  }
  auto it = s_.calls_by_code.find(code);
  if (it != s_.calls_by_code.end()) {
    ++it->second;
  } else if (s_.calls_by_code.size() < kMaxDistinct) {
    s_.calls_by_code[code] = 1;
  }
  const uint16_t status = static_cast<uint16_t>(result);
  // Statuses are 16 bits: at most 65535 keys, in practice a handful.
  if (status != 0) ++s_.failures_by_status[status];
}

HvStatsSnapshot HvStats::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return s_;
}

std::string HvStatsSnapshot::ToString() const {
  auto hex_count = [](std::string* out, const auto& kv) {
    absl::StrAppendFormat(out, "%#x:%d", kv.first, kv.second);
  };
  auto hex = [](std::string* out, uint32_t v) {
    absl::StrAppendFormat(out, "%#x", v);
  };
  return absl::StrFormat(
      "msr r=%d w=%d gp=%d [%s] hypercalls=%d ud=%d codes{%s} failures{%s}",
      msr_reads, msr_writes, msr_gp, absl::StrJoin(gp_msrs, " ", hex),
      hypercalls, hypercall_ud, absl::StrJoin(calls_by_code, " ", hex_count),
      absl::StrJoin(failures_by_status, " ", hex_count));
}

}  // namespace hvcore::hyperv
