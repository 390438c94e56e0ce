#include "hvcore/hyperv/hostile_guest.h"

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
  for (int run = 0; run < 300; ++run) {
    script.resize(rng() % 8192);
    for (uint8_t& b : script) b = static_cast<uint8_t>(rng());
    RunHostileGuestScript(script);
  }
}

}  // namespace
}  // namespace hvcore::hyperv
