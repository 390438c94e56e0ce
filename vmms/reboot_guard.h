#ifndef HVSTACK_VMMS_REBOOT_GUARD_H_
#define HVSTACK_VMMS_REBOOT_GUARD_H_

#include <cstdint>
#include <deque>
#include <string>

#include "absl/time/time.h"

namespace vmms {

// Reboot-loop protection: a guest that resets more than `max_reboots` times
// within `window` gets no fresh worker (vmms records it Crashed "guest
// crashed: reboot loop: ..."). Not thread-safe: the VM's supervisor chain
// (one worker's supervisor at a time) owns it.
class RebootGuard {
 public:
  static constexpr uint32_t kDefaultMaxReboots = 10;
  static constexpr absl::Duration kDefaultWindow = absl::Seconds(60);

  RebootGuard(uint32_t max_reboots, absl::Duration window);

  // Records a reboot at `now`. False when it is one too many: more than
  // max_reboots within the window ending at `now`.
  bool Record(absl::Time now);

  // E.g. "11 reboots within 60s"; meaningful after Record returned false.
  std::string Describe() const;

 private:
  const uint32_t max_reboots_;
  const absl::Duration window_;
  std::deque<absl::Time> recent_;
};

}  // namespace vmms

#endif  // HVSTACK_VMMS_REBOOT_GUARD_H_
