#include "hvcore/hyperv/reference_time.h"

#include <cstdint>

#include "gtest/gtest.h"
#include "hvcore/hyperv/tlfs.h"

namespace hvcore::hyperv {
namespace {

class ScaleTest : public testing::TestWithParam<uint64_t> {};

// The guest's formula turns one second, one hour and a year of TSC ticks into
// the matching number of 100 ns units, within one unit.
TEST_P(ScaleTest, GuestFormulaCountsHundredsOfNanoseconds) {
  const uint64_t hz = GetParam();
  absl::StatusOr<uint64_t> scale = ReferenceTscScale(hz);
  ASSERT_TRUE(scale.ok()) << scale.status();
  for (uint64_t seconds : {1ull, 3600ull, 365ull * 24 * 3600}) {
    const uint64_t ticks = ScaleTsc(hz * seconds, *scale);
    const uint64_t expected = seconds * kReferenceHz;
    EXPECT_LE(ticks, expected) << hz << " Hz, " << seconds << " s";
    EXPECT_GE(ticks + 1, expected) << hz << " Hz, " << seconds << " s";
  }
}

// Common and awkward frequencies: 1 GHz, this host's class of AMD CPU, a
// non-round calibrated value, and a 5 GHz part.
INSTANTIATE_TEST_SUITE_P(Frequencies, ScaleTest,
                         testing::Values(1'000'000'000ull, 2'495'312'000ull,
                                         2'100'000'001ull, 3'000'000'000ull,
                                         5'000'000'000ull, 10'000'001ull));

TEST(ReferenceTscScaleTest, KnownValues) {
  // 10^7 * 2^64 / 10^9 = 2^64 / 100.
  EXPECT_EQ(*ReferenceTscScale(1'000'000'000), 0x028F5C28F5C28F5Cull);
  // 2^64 * 10^7 / (2 * 10^7) = 2^63.
  EXPECT_EQ(*ReferenceTscScale(20'000'000), 1ull << 63);
}

TEST(ReferenceTscScaleTest, RejectsSlowTsc) {
  EXPECT_FALSE(ReferenceTscScale(0).ok());
  EXPECT_FALSE(ReferenceTscScale(kReferenceHz).ok());
}

TEST(ReferenceClockTest, StartsAtZeroAtTheStartTsc) {
  const uint64_t hz = 2'000'000'000;
  const uint64_t start = 123'456'789'000ull;
  absl::StatusOr<ReferenceClock> clock = ReferenceClock::Create(hz, start);
  ASSERT_TRUE(clock.ok());
  EXPECT_EQ(clock->At(start), 0u);
  // One second after the start.
  const uint64_t one_second = clock->At(start + hz);
  EXPECT_GE(one_second + 1, kReferenceHz);
  EXPECT_LE(one_second, kReferenceHz + 1);
  // The guest's own arithmetic (unsigned wrap-around add of the offset) gives
  // the same value as the MSR path.
  const uint64_t tsc = start + 7 * hz + 12345;
  EXPECT_EQ(
      ScaleTsc(tsc, clock->scale()) + static_cast<uint64_t>(clock->offset()),
      clock->At(tsc));
}

TEST(ReferenceClockTest, ZeroStartMeansZeroOffset) {
  absl::StatusOr<ReferenceClock> clock =
      ReferenceClock::Create(3'000'000'000, 0);
  ASSERT_TRUE(clock.ok());
  EXPECT_EQ(clock->offset(), 0);
}

}  // namespace
}  // namespace hvcore::hyperv
