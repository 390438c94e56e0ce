#ifndef HVSTACK_HVCORE_HYPERV_FAKES_H_
#define HVSTACK_HVCORE_HYPERV_FAKES_H_

// Test doubles for the seams in seams.h.

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "hvcore/hyperv/seams.h"

namespace hvcore::hyperv {

class RecordingInjector final : public SintInjector {
 public:
  struct Injection {
    uint32_t vp_index;
    uint8_t vector;
    bool auto_eoi;
    bool operator==(const Injection&) const = default;
  };

  void InjectSint(uint32_t vp_index, uint8_t vector, bool auto_eoi) override {
    absl::MutexLock lock(&mu_);
    injections_.push_back({vp_index, vector, auto_eoi});
  }
  std::vector<Injection> Take() {
    absl::MutexLock lock(&mu_);
    return std::exchange(injections_, {});
  }

 private:
  absl::Mutex mu_;
  std::vector<Injection> injections_ ABSL_GUARDED_BY(mu_);
};

class RecordingCrashHandler final : public GuestCrashHandler {
 public:
  void OnGuestCrash(const GuestCrashReport& report) override {
    absl::MutexLock lock(&mu_);
    reports_.push_back(report);
  }
  std::vector<GuestCrashReport> Take() {
    absl::MutexLock lock(&mu_);
    return std::exchange(reports_, {});
  }

 private:
  absl::Mutex mu_;
  std::vector<GuestCrashReport> reports_ ABSL_GUARDED_BY(mu_);
};

class FakeTsc final : public GuestTscSource {
 public:
  uint64_t ReadGuestTsc() override { return tsc; }
  uint64_t tsc = 0;
};

}  // namespace hvcore::hyperv

#endif  // HVSTACK_HVCORE_HYPERV_FAKES_H_
