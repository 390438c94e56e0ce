#include "hvcore/hyperv/hostile_guest.h"

#include <cstdio>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace hvcore::hyperv {
namespace {

// Deterministic random scripts; a broken invariant aborts the test binary.
// The same function is a libFuzzer target (hostile_guest_fuzz.cc).
TEST(HostileGuestTest, RandomScriptsKeepTheInvariants) {
  std::mt19937_64 rng(20261123);
  std::vector<uint8_t> script;
  uint64_t completed = 0, failed = 0, ud = 0, gp = 0;
  for (int run = 0; run < 300; ++run) {
    script.resize(rng() % 8192);
    for (uint8_t& b : script) b = static_cast<uint8_t>(rng());
    const HvStatsSnapshot s = RunHostileGuestScript(script);
    uint64_t failures = 0;
    for (const auto& [status, n] : s.failures_by_status) failures += n;
    completed += s.hypercalls - s.hypercall_ud - failures;
    failed += failures;
    ud += s.hypercall_ud;
    gp += s.msr_gp;
  }
  // The scripts get past the #UD and #GP gates, into successful calls.
  EXPECT_GT(completed, 100u);
  EXPECT_GT(failed, 100u);
  EXPECT_GT(ud, 100u);
  EXPECT_GT(gp, 100u);
  std::printf("hypercalls: %lu succeeded, %lu failed, %lu #UD; MSR #GP %lu\n",
              completed, failed, ud, gp);
}

}  // namespace
}  // namespace hvcore::hyperv
