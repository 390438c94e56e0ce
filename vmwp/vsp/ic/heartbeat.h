#ifndef HVSTACK_VMWP_VSP_IC_HEARTBEAT_H_
#define HVSTACK_VMWP_VSP_IC_HEARTBEAT_H_

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "vmwp/vsp/ic/ic_framework.h"

namespace vsp::ic {

enum class HeartbeatStatus { kNoContact, kOk, kLost };
const char* HeartbeatStatusName(HeartbeatStatus s);

// The host's half of the heartbeat IC: it sends a sequence number, the guest
// (hv_utils: heartbeat_onchannelcallback) answers with sequence + 1. The
// guest is OK while answers keep arriving within `lost_after`; LOST once it
// has answered before but stops; NO_CONTACT until its first answer. Time is
// passed in, so the logic is testable and the caller owns the timer.
class HeartbeatMonitor {
 public:
  struct Options {
    absl::Duration interval = absl::Seconds(1);  // how often to send
    absl::Duration lost_after = absl::Seconds(5);
  };
  explicit HeartbeatMonitor(Options options) : options_(options) {}

  // The next request, if one is due at `now`. The guest may answer any
  // request sent since its last answer (a slow guest answers late).
  std::optional<std::vector<uint8_t>> MaybeRequest(const IcVersions& versions,
                                                   absl::Time now);
  // A HEARTBEAT response from the guest.
  absl::Status OnResponse(std::span<const uint8_t> bytes, absl::Time now);
  // Forget the outstanding request (channel closed or reopened).
  void Reset();

  HeartbeatStatus Status(absl::Time now) const;

  // Save and restore (issue 14): times as ages at `now`, so the time a VM
  // spent saved does not count.
  struct Saved {
    uint64_t next_sequence = 1;
    std::optional<uint64_t> outstanding;  // the oldest unanswered request
    std::optional<absl::Duration> sent_age;
    std::optional<absl::Duration> answer_age;
    uint64_t last_sequence = 0;
  };
  Saved Save(absl::Time now) const;
  void Restore(const Saved& saved, absl::Time now);
  uint64_t last_sequence() const { return last_sequence_; }
  // When the guest last answered (InfinitePast: never).
  absl::Time last_answer() const { return last_answer_; }

 private:
  Options options_;
  uint64_t next_sequence_ = 1;
  std::optional<uint64_t> outstanding_;
  absl::Time sent_at_ = absl::InfinitePast();
  absl::Time last_answer_ = absl::InfinitePast();
  uint64_t last_sequence_ = 0;
};

}  // namespace vsp::ic

#endif  // HVSTACK_VMWP_VSP_IC_HEARTBEAT_H_
