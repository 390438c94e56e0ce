#include "hvcore/hyperv/synic.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"

namespace hvcore::hyperv {
namespace {

// First 8 bytes of hv_message: type (32), payload_size (8), flags (8),
// reserved (16), little-endian.
constexpr int kHeaderSizeShift = 32;
constexpr int kHeaderFlagsShift = 40;
constexpr uint64_t kHeaderPendingBit = uint64_t{kMessageFlagPending}
                                       << kHeaderFlagsShift;

uint32_t HeaderType(uint64_t word) { return static_cast<uint32_t>(word); }

uint64_t PageBase(uint64_t reg) { return reg & kMsrPageAddressMask; }
bool PageEnabled(uint64_t reg) { return (reg & kMsrPageEnable) != 0; }

}  // namespace

Synic::Synic(uint32_t vp_index, GuestRam& ram, SintInjector& injector,
             size_t max_queued_per_sint)
    : vp_index_(vp_index),
      ram_(ram),
      injector_(injector),
      max_queued_(max_queued_per_sint) {
  absl::MutexLock lock(&mu_);
  ResetLocked();
}

bool Synic::IsSynicMsr(uint32_t msr) {
  return (msr >= kMsrScontrol && msr <= kMsrEom) ||
         (msr >= kMsrSint0 && msr <= kMsrSint15);
}

void Synic::ResetLocked() {
  scontrol_ = 0;
  simp_ = 0;
  siefp_ = 0;
  sint_.fill(kSintResetValue);
  for (auto& q : queue_) q.clear();
}

void Synic::Reset() {
  absl::MutexLock lock(&mu_);
  ResetLocked();
}

size_t Synic::QueuedMessages(uint32_t sint) const {
  absl::MutexLock lock(&mu_);
  return sint < kSintCount ? queue_[sint].size() : 0;
}

MsrResult Synic::ReadMsr(uint32_t msr) {
  absl::MutexLock lock(&mu_);
  switch (msr) {
    case kMsrScontrol:
      return MsrResult::Ok(scontrol_);
    case kMsrSversion:
      return MsrResult::Ok(kSynicVersion);
    case kMsrSiefp:
      return MsrResult::Ok(siefp_);
    case kMsrSimp:
      return MsrResult::Ok(simp_);
    case kMsrEom:
      return MsrResult::Ok(0);  // write-only; reads return 0
    default:
      if (msr >= kMsrSint0 && msr <= kMsrSint15) {
        return MsrResult::Ok(sint_[msr - kMsrSint0]);
      }
      return MsrResult::Gp();
  }
}

MsrResult Synic::WritePageMsrLocked(uint64_t& reg, uint64_t value) {
  // Bits 11:1 are RsvdP: stored as written. A page outside RAM is a #GP (as
  // in KVM; the TLFS only says such a page is inaccessible).
  const bool enable = PageEnabled(value);
  if (enable && !IsRam(ram_, PageBase(value), kPageSize)) {
    return MsrResult::Gp();
  }
  // A newly enabled page starts empty: stale bytes in a message slot would
  // look like an unread message and block the SINT forever.
  if (enable && (!PageEnabled(reg) || PageBase(reg) != PageBase(value))) {
    (void)ZeroGuest(ram_, PageBase(value), kPageSize);  // checked above
  }
  reg = value;
  return MsrResult::Ok();
}

MsrResult Synic::WriteMsr(uint32_t msr, uint64_t value) {
  std::vector<Injection> injections;
  MsrResult result = MsrResult::Ok();
  {
    absl::MutexLock lock(&mu_);
    switch (msr) {
      case kMsrScontrol:
        scontrol_ = value;  // bits 63:1 are RsvdP
        FlushAllLocked(injections);
        break;
      case kMsrSversion:
        return MsrResult::Gp();  // read-only
      case kMsrSiefp:
        result = WritePageMsrLocked(siefp_, value);
        break;
      case kMsrSimp:
        // With the page disabled, queued messages stay queued (TLFS); a
        // freshly enabled, empty page can take them at once.
        result = WritePageMsrLocked(simp_, value);
        FlushAllLocked(injections);
        break;
      case kMsrEom:
        // End of message: the guest freed a slot that had the pending flag.
        // Any SINT with a queue may have room now.
        FlushAllLocked(injections);
        break;
      default: {
        if (msr < kMsrSint0 || msr > kMsrSint15) return MsrResult::Gp();
        // Vectors 0-15 are a #GP unless masked (the reset value is vector 0,
        // masked, and guests write it back). Bits 15:8 and 63:19 are RsvdP.
        if (!(value & kSintMasked) &&
            (value & kSintVectorMask) < kSintFirstValidVector) {
          return MsrResult::Gp();
        }
        sint_[msr - kMsrSint0] = value;
        break;
      }
    }
  }
  Inject(injections);
  return result;
}

Synic::SlotOutcome Synic::TryDeliverLocked(uint32_t sint,
                                           const QueuedMessage& message,
                                           bool more_pending) {
  if (!PageEnabled(simp_)) return SlotOutcome::kNoPage;
  const uint64_t slot = PageBase(simp_) + uint64_t{sint} * kMessageSize;
  std::atomic<uint64_t>* head = GuestWord(ram_, slot);
  uint8_t* body = ram_.HostPointer(slot + 8, kMessageSize - 8);
  if (head == nullptr || body == nullptr) return SlotOutcome::kNoPage;

  uint64_t word = head->load(std::memory_order_acquire);
  while (HeaderType(word) != kMessageTypeNone) {
    // Busy: flag it so the guest writes EOM when it frees the slot. The CAS
    // fails if the guest freed the slot meanwhile; then we deliver.
    if (word & kHeaderPendingBit) return SlotOutcome::kBusy;
    if (head->compare_exchange_weak(word, word | kHeaderPendingBit,
                                    std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
      return SlotOutcome::kBusy;
    }
  }
  // Free: the guest does not touch a free slot, so the body can be written
  // plainly; the header word goes last, with release ordering, because the
  // guest reads message_type first.
  std::memset(body, 0, kMessageSize - 8);  // sender 0 = the host
  std::memcpy(body + 8, message.payload.data(), message.size);
  const uint64_t header = uint64_t{message.type} |
                          (uint64_t{message.size} << kHeaderSizeShift) |
                          (more_pending ? kHeaderPendingBit : 0);
  head->store(header, std::memory_order_release);
  return SlotOutcome::kDelivered;
}

void Synic::FlushAllLocked(std::vector<Injection>& injections) {
  for (uint32_t sint = 0; sint < kSintCount; ++sint) {
    if (!queue_[sint].empty()) FlushLocked(sint, injections);
  }
}

void Synic::FlushLocked(uint32_t sint, std::vector<Injection>& injections) {
  if (!(scontrol_ & kScontrolEnable)) return;
  auto& queue = queue_[sint];
  while (!queue.empty()) {
    const SlotOutcome outcome =
        TryDeliverLocked(sint, queue.front(), queue.size() > 1);
    if (outcome != SlotOutcome::kDelivered) return;
    queue.pop_front();
    MaybeInterruptLocked(sint, injections);
  }
}

void Synic::MaybeInterruptLocked(uint32_t sint,
                                 std::vector<Injection>& injections) {
  const uint64_t reg = sint_[sint];
  if (!(scontrol_ & kScontrolEnable)) return;
  // Masked: the message stays in the slot and the interrupt is lost (TLFS).
  // Polling: the guest looks at the page itself.
  if (reg & (kSintMasked | kSintPolling)) return;
  injections.push_back(Injection{static_cast<uint8_t>(reg & kSintVectorMask),
                                 (reg & kSintAutoEoi) != 0});
}

void Synic::Inject(const std::vector<Injection>& injections) {
  for (const Injection& i : injections) {
    injector_.InjectSint(vp_index_, i.vector, i.auto_eoi);
  }
}

absl::Status Synic::PostMessage(uint32_t sint, uint32_t message_type,
                                std::span<const uint8_t> payload) {
  if (sint >= kSintCount) {
    return absl::InvalidArgumentError(absl::StrFormat("SINT %d", sint));
  }
  if (payload.size() > kMessagePayloadSize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("message payload of %d bytes (at most %d)",
                        payload.size(), kMessagePayloadSize));
  }
  if (message_type == kMessageTypeNone) {
    return absl::InvalidArgumentError("message type 0 marks a free slot");
  }
  QueuedMessage message{.type = message_type,
                        .size = static_cast<uint8_t>(payload.size()),
                        .payload = {}};
  std::copy(payload.begin(), payload.end(), message.payload.begin());

  std::vector<Injection> injections;
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (!(scontrol_ & kScontrolEnable) || !PageEnabled(simp_)) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "vp%d: SynIC message page not enabled by the guest", vp_index_));
    }
    auto& queue = queue_[sint];
    // Keep FIFO order: nothing overtakes a queued message.
    FlushLocked(sint, injections);
    if (queue.empty()) {
      switch (TryDeliverLocked(sint, message, /*more_pending=*/false)) {
        case SlotOutcome::kDelivered:
          MaybeInterruptLocked(sint, injections);
          break;
        case SlotOutcome::kBusy:
          queue.push_back(message);
          break;
        case SlotOutcome::kNoPage:
          status = absl::FailedPreconditionError("message page not in RAM");
          break;
      }
    } else if (queue.size() >= max_queued_) {
      status = absl::ResourceExhaustedError(
          absl::StrFormat("vp%d SINT%d: %d messages already wait for the guest",
                          vp_index_, sint, queue.size()));
    } else {
      queue.push_back(message);
    }
  }
  Inject(injections);
  return status;
}

absl::Status Synic::SignalEvent(uint32_t sint, uint32_t flag) {
  if (sint >= kSintCount || flag >= kEventFlagsPerSint) {
    return absl::InvalidArgumentError(
        absl::StrFormat("SINT %d event flag %d", sint, flag));
  }
  std::vector<Injection> injections;
  {
    absl::MutexLock lock(&mu_);
    if (!(scontrol_ & kScontrolEnable) || !PageEnabled(siefp_)) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "vp%d: SynIC event flags page not enabled by the guest", vp_index_));
    }
    const uint64_t gpa = PageBase(siefp_) +
                         uint64_t{sint} * kEventFlagsBytesPerSint +
                         uint64_t{flag / 64} * 8;
    std::atomic<uint64_t>* word = GuestWord(ram_, gpa);
    if (word == nullptr) {
      return absl::FailedPreconditionError("event flags page not in RAM");
    }
    const uint64_t bit = uint64_t{1} << (flag % 64);
    // Atomic against the guest clearing other bits of the same word. An
    // already-set flag has an interrupt on its way: do not raise another.
    if (!(word->fetch_or(bit, std::memory_order_acq_rel) & bit)) {
      MaybeInterruptLocked(sint, injections);
    }
  }
  Inject(injections);
  return absl::OkStatus();
}

}  // namespace hvcore::hyperv
