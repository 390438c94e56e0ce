#include "vmwp/vsp/ic/heartbeat.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace vsp::ic {

const char* HeartbeatStatusName(HeartbeatStatus s) {
  switch (s) {
    case HeartbeatStatus::kNoContact:
      return "no contact";
    case HeartbeatStatus::kOk:
      return "OK";
    case HeartbeatStatus::kLost:
      return "lost";
  }
  return "?";
}

std::optional<std::vector<uint8_t>> HeartbeatMonitor::MaybeRequest(
    const IcVersions& versions, absl::Time now) {
  if (now - sent_at_ < options_.interval) return std::nullopt;
  // The guest may answer any request sent since its last answer: one slower
  // than the interval (a loaded host, nested emulation) answers each request
  // after the next one went out, and is still alive. `outstanding_` is the
  // oldest unanswered request.
  HeartbeatData data{};
  data.seq_num = next_sequence_;
  if (!outstanding_.has_value()) outstanding_ = next_sequence_;
  // Step by more than the guest's +1 so a stale answer never matches.
  next_sequence_ += 2;
  sent_at_ = now;
  return BuildIcRequest(
      kIcHeartbeat, versions,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&data),
                               sizeof(data)));
}

absl::Status HeartbeatMonitor::OnResponse(std::span<const uint8_t> bytes,
                                          absl::Time now) {
  absl::StatusOr<IcResponse> r = ParseIcResponse(bytes, kIcHeartbeat);
  if (!r.ok()) return r.status();
  if (r->header.status != kHvSOk) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "heartbeat answered with status 0x%08x", r->header.status));
  }
  // hv_utils checks only for the sequence number, not the reserved words.
  if (r->body.size() < sizeof(uint64_t)) {
    return absl::InvalidArgumentError("heartbeat response without sequence");
  }
  uint64_t seq;
  std::memcpy(&seq, r->body.data(), sizeof(seq));
  // hv_utils answers a request with its number + 1. Requests carry
  // outstanding_, outstanding_ + 2, ... up to next_sequence_ - 2.
  const uint64_t request = seq - 1;
  if (!outstanding_.has_value() || request < *outstanding_ ||
      request >= next_sequence_ || (request - *outstanding_) % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "heartbeat sequence %d does not answer a request sent since the "
        "guest's last answer",
        seq));
  }
  // Requests sent after this one stay answerable.
  if (request + 2 < next_sequence_) {
    outstanding_ = request + 2;
  } else {
    outstanding_.reset();
  }
  last_sequence_ = seq;
  last_answer_ = now;
  return absl::OkStatus();
}

void HeartbeatMonitor::Reset() {
  outstanding_.reset();
  sent_at_ = absl::InfinitePast();
}

HeartbeatMonitor::Saved HeartbeatMonitor::Save(absl::Time now) const {
  Saved s;
  s.next_sequence = next_sequence_;
  s.outstanding = outstanding_;
  if (sent_at_ != absl::InfinitePast()) s.sent_age = now - sent_at_;
  if (last_answer_ != absl::InfinitePast()) s.answer_age = now - last_answer_;
  s.last_sequence = last_sequence_;
  return s;
}

void HeartbeatMonitor::Restore(const Saved& saved, absl::Time now) {
  next_sequence_ = saved.next_sequence;
  outstanding_ = saved.outstanding;
  sent_at_ =
      saved.sent_age.has_value() ? now - *saved.sent_age : absl::InfinitePast();
  last_answer_ = saved.answer_age.has_value() ? now - *saved.answer_age
                                              : absl::InfinitePast();
  last_sequence_ = saved.last_sequence;
}

HeartbeatStatus HeartbeatMonitor::Status(absl::Time now) const {
  if (last_answer_ == absl::InfinitePast()) return HeartbeatStatus::kNoContact;
  return now - last_answer_ <= options_.lost_after ? HeartbeatStatus::kOk
                                                   : HeartbeatStatus::kLost;
}

}  // namespace vsp::ic
