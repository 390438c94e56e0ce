#include "hvcore/hyperv/hv_stats.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hvcore/hyperv/hypercall_control.h"
#include "hvcore/hyperv/tlfs.h"

namespace hvcore::hyperv {
namespace {

using testing::ElementsAre;
using testing::Pair;

TEST(HvStatsTest, CountsAndRefusals) {
  HvStats stats;
  stats.RecordMsr(kMsrGuestOsId, true, false);
  stats.RecordMsr(kMsrVpIndex, false, false);
  stats.RecordMsr(0x400000B0, true, true);
  stats.RecordMsr(0x400000B0, true, true);  // distinct list keeps one
  stats.RecordMsr(0x40000003, false, true);
  stats.RecordHypercall(kHvCallPostMessage, false, 0);
  stats.RecordHypercall(kHvCallPostMessage, false,
                        HypercallResult(kHvStatusInsufficientBuffers));
  stats.RecordHypercall(0x13, false,
                        HypercallResult(kHvStatusInvalidHypercallCode));
  stats.RecordHypercall(kHvCallPostMessage, true, 0);

  const HvStatsSnapshot s = stats.Snapshot();
  EXPECT_EQ(s.msr_reads, 2u);
  EXPECT_EQ(s.msr_writes, 3u);
  EXPECT_EQ(s.msr_gp, 3u);
  EXPECT_THAT(s.gp_msrs, ElementsAre(0x400000B0u, 0x40000003u));
  EXPECT_EQ(s.hypercalls, 4u);
  EXPECT_EQ(s.hypercall_ud, 1u);
  EXPECT_THAT(s.calls_by_code, ElementsAre(Pair(0x13, 1), Pair(0x5C, 2)));
  EXPECT_THAT(s.failures_by_status, ElementsAre(Pair(0x2, 1), Pair(0x13, 1)));
  EXPECT_EQ(s.ToString(),
            "msr r=2 w=3 gp=3 [0x400000b0 0x40000003] hypercalls=4 ud=1 "
            "codes{0x13:1 0x5c:2} failures{0x2:1 0x13:1}");
}

TEST(HvStatsTest, BoundedByWhatTheGuestChooses) {
  HvStats stats;
  for (uint32_t i = 0; i < 1000; ++i) {
    stats.RecordMsr(kMsrRangeBase + i, false, true);
    stats.RecordHypercall(static_cast<uint16_t>(i), false, 2);
  }
  const HvStatsSnapshot s = stats.Snapshot();
  EXPECT_EQ(s.gp_msrs.size(), HvStats::kMaxDistinct);
  EXPECT_EQ(s.calls_by_code.size(), HvStats::kMaxDistinct);
  EXPECT_EQ(s.hypercalls, 1000u);
  EXPECT_EQ(s.msr_gp, 1000u);
}

}  // namespace
}  // namespace hvcore::hyperv
