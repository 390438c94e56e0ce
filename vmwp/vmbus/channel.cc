#include "vmwp/vmbus/channel.h"

#include <atomic>

#include "absl/strings/str_format.h"

namespace vmbus {

LiveChannel::LiveChannel(uint32_t relid, uint32_t target_vp, RingReader in,
                         RingWriter out, ChannelSignal signal,
                         GuestPages& memory, GpadlMapper map_gpadl)
    : relid_(relid),
      target_vp_(target_vp),
      signal_(signal),
      memory_(memory),
      map_gpadl_(std::move(map_gpadl)),
      in_(std::move(in)),
      out_(std::move(out)) {}

void LiveChannel::SignalGuest() {
  if (signal_.synic == nullptr) return;
  uint32_t flag = relid_;
  if (signal_.win7_interrupt_page != nullptr) {
    // Receive half of the interrupt page: one bit per relid (relid < 2048
    // keeps it inside the first 2 KiB; the server assigns relids that way).
    auto* words = reinterpret_cast<uint32_t*>(signal_.win7_interrupt_page);
    std::atomic_ref<uint32_t>(words[relid_ / 32]).fetch_or(1u << (relid_ % 32));
    flag = 0;
  }
  // A failed signal is the SynIC's to report; the packet is in the ring and
  // the guest finds it on its next interrupt or poll.
  (void)signal_.synic->SignalEvent(target_vp_.load(), signal_.sint, flag);
}

absl::StatusOr<WriteResult> LiveChannel::Send(
    uint16_t type, uint16_t flags, uint64_t trans_id,
    std::span<const uint8_t> extension, std::span<const uint8_t> payload) {
  absl::StatusOr<WriteResult> result;
  {
    absl::MutexLock lock(&out_mu_);
    if (closed_.load()) {
      return absl::FailedPreconditionError(
          absl::StrFormat("channel %d is closed", relid_));
    }
    result = out_.Write(type, flags, trans_id, extension, payload);
    if (!result.ok() && result.status().code() == absl::StatusCode::kDataLoss) {
      broken_.store(true);
    }
  }
  if (result.ok() && result->signal_guest) SignalGuest();
  return result;
}

absl::Status LiveChannel::Drain(Vsp& vsp) {
  return Drain(vsp, UINT32_MAX).status();
}

absl::StatusOr<bool> LiveChannel::Drain(Vsp& vsp, uint32_t budget) {
  absl::MutexLock lock(&in_mu_);
  if (closed_.load() || broken_.load()) return false;
  auto fail = [this](absl::Status s) {
    broken_.store(true);
    return s;
  };
  uint32_t delivered = 0;
  for (;;) {
    in_.BeginDrain();
    bool budget_used = false;
    for (;;) {
      if (delivered == budget) {
        budget_used = true;
        break;
      }
      absl::StatusOr<bool> got = in_.Next(&packet_);
      if (!got.ok()) return fail(got.status());
      if (!*got) break;
      vsp.OnPacket(*this, packet_);
      ++delivered;
    }
    absl::StatusOr<bool> signal = in_.Commit();
    if (!signal.ok()) return fail(signal.status());
    if (*signal) SignalGuest();
    // Out of budget: interrupts stay masked, the caller comes back.
    if (budget_used) return true;
    absl::StatusOr<bool> more = in_.EndDrain();
    if (!more.ok()) return fail(more.status());
    if (!*more) break;
  }
  vsp.OnSignal(*this);
  return false;
}

absl::StatusOr<MappedGpadl> LiveChannel::MapGpadl(uint32_t handle) {
  if (closed_.load()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("channel %d is closed", relid_));
  }
  if (!map_gpadl_) {
    return absl::NotFoundError(
        absl::StrFormat("channel %d has no GPADL 0x%x", relid_, handle));
  }
  return map_gpadl_(handle);
}

LiveChannel::RingIndices LiveChannel::SaveIndices() {
  absl::MutexLock in_lock(&in_mu_);
  absl::MutexLock out_lock(&out_mu_);
  return RingIndices{.in_read = in_.read_index(),
                     .in_published = in_.published_index(),
                     .out_write = out_.write_index(),
                     .out_pending_set = out_.pending_set(),
                     .broken = broken_.load()};
}

void LiveChannel::Close() {
  absl::MutexLock in_lock(&in_mu_);
  absl::MutexLock out_lock(&out_mu_);
  closed_.store(true);
}

}  // namespace vmbus
