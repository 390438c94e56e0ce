// HvPartition and Synic save/restore (issue 14). Kept apart from the
// protocol code so that the fuzz suites that build hv_partition.cc / synic.cc
// with clang need no generated protobuf code.

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "hvcore/hyperv/hv_partition.h"
#include "hvcore/hyperv/saved_state.pb.h"
#include "hvcore/hyperv/synic.h"

namespace hvcore::hyperv {
namespace {

uint64_t PageBase(uint64_t reg) { return reg & kMsrPageAddressMask; }
bool PageEnabled(uint64_t reg) { return (reg & kMsrPageEnable) != 0; }

}  // namespace

hvstack::saved::SynicState Synic::SaveState() const {
  hvstack::saved::SynicState out;
  absl::MutexLock lock(&mu_);
  out.set_vp_index(vp_index_);
  out.set_scontrol(scontrol_);
  out.set_simp(simp_);
  out.set_siefp(siefp_);
  for (uint64_t sint : sint_) out.add_sint(sint);
  for (uint32_t sint = 0; sint < kSintCount; ++sint) {
    for (const QueuedMessage& m : queue_[sint]) {
      hvstack::saved::QueuedSynicMessage* q = out.add_queued();
      q->set_sint(sint);
      q->set_type(m.type);
      q->set_payload(
          std::string(reinterpret_cast<const char*>(m.payload.data()), m.size));
    }
  }
  return out;
}

absl::Status Synic::RestoreState(const hvstack::saved::SynicState& state) {
  auto bad = [&](absl::string_view field, uint64_t value) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "saved SynIC of vp%d: %s 0x%x is not valid", vp_index_, field, value));
  };
  if (state.vp_index() != vp_index_) return bad("vp_index", state.vp_index());
  for (const auto& [name, value] :
       {std::pair<const char*, uint64_t>{"SIMP", state.simp()},
        std::pair<const char*, uint64_t>{"SIEFP", state.siefp()}}) {
    if (PageEnabled(value) && !IsRam(ram_, PageBase(value), kPageSize)) {
      return bad(name, value);
    }
  }
  if (state.sint_size() != static_cast<int>(kSintCount)) {
    return bad("SINT count", state.sint_size());
  }
  for (uint64_t sint : state.sint()) {
    if (!(sint & kSintMasked) &&
        (sint & kSintVectorMask) < kSintFirstValidVector) {
      return bad("SINT", sint);
    }
  }
  std::array<std::deque<QueuedMessage>, kSintCount> queues;
  for (const hvstack::saved::QueuedSynicMessage& q : state.queued()) {
    if (q.sint() >= kSintCount) return bad("queued message SINT", q.sint());
    if (q.type() == kMessageTypeNone) return bad("queued message type", 0);
    if (q.payload().size() > kMessagePayloadSize) {
      return bad("queued message size", q.payload().size());
    }
    if (queues[q.sint()].size() >= max_queued_) {
      return bad("queued messages on SINT", q.sint());
    }
    QueuedMessage m{.type = q.type(),
                    .size = static_cast<uint8_t>(q.payload().size()),
                    .payload = {}};
    std::memcpy(m.payload.data(), q.payload().data(), q.payload().size());
    queues[q.sint()].push_back(m);
  }
  absl::MutexLock lock(&mu_);
  scontrol_ = state.scontrol();
  simp_ = state.simp();
  siefp_ = state.siefp();
  std::copy(state.sint().begin(), state.sint().end(), sint_.begin());
  queue_ = std::move(queues);
  return absl::OkStatus();
}

hvstack::saved::HvPartitionState HvPartition::SaveState(uint64_t guest_tsc) {
  hvstack::saved::HvPartitionState out;
  out.set_version(kStateVersion);
  out.set_vp_count(vp_count());
  out.set_tsc_hz(clock_.tsc_hz());
  out.set_reference_time(clock_.At(guest_tsc));
  {
    absl::MutexLock lock(&mu_);
    out.set_guest_os_id(guest_os_id_);
    out.set_hypercall(hypercall_);
    out.set_reference_tsc(reference_tsc_);
    out.set_tsc_sequence(tsc_sequence_);
    for (uint64_t page : assist_pages_) out.add_assist_pages(page);
    for (uint64_t p : crash_params_) out.add_crash_params(p);
    if (saved_page_.has_value()) {
      out.set_hypercall_page_original(std::string(
          reinterpret_cast<const char*>(saved_page_->data()), kPageSize));
    }
  }
  for (const auto& synic : synics_) *out.add_synics() = synic->SaveState();
  return out;
}

absl::Status HvPartition::RestoreState(
    const hvstack::saved::HvPartitionState& state, uint64_t guest_tsc) {
  auto bad = [](absl::string_view field, uint64_t value) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "saved Hyper-V state: %s 0x%x is not valid", field, value));
  };
  if (state.version() == 0 || state.version() > kStateVersion) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "Hyper-V state format version %d; this worker reads 1 to %d",
        state.version(), kStateVersion));
  }
  if (state.vp_count() != vp_count() ||
      state.synics_size() != static_cast<int>(vp_count()) ||
      state.assist_pages_size() != static_cast<int>(vp_count())) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "Hyper-V state for %d VP(s) (%d SynICs); the partition has %d",
        state.vp_count(), state.synics_size(), vp_count()));
  }
  if (state.tsc_hz() != clock_.tsc_hz()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "reference clock: the saved guest's TSC ran at %d Hz, this host's at "
        "%d Hz",
        state.tsc_hz(), clock_.tsc_hz()));
  }
  if (state.crash_params_size() != 5) {
    return bad("crash parameter count", state.crash_params_size());
  }
  for (const auto& [name, value] :
       {std::pair<const char*, uint64_t>{"HYPERCALL", state.hypercall()},
        std::pair<const char*, uint64_t>{"REFERENCE_TSC",
                                         state.reference_tsc()}}) {
    if (PageEnabled(value) && !IsRam(ram_, PageBase(value), kPageSize)) {
      return bad(name, value);
    }
  }
  for (uint64_t page : state.assist_pages()) {
    if (PageEnabled(page) && !IsRam(ram_, PageBase(page), kPageSize)) {
      return bad("VP_ASSIST_PAGE", page);
    }
  }
  if (PageEnabled(state.hypercall()) !=
      (state.hypercall_page_original().size() == kPageSize)) {
    return bad("hypercall page original bytes",
               state.hypercall_page_original().size());
  }
  absl::StatusOr<ReferenceClock> clock = ReferenceClock::ContinueAt(
      state.tsc_hz(), guest_tsc, state.reference_time());
  if (!clock.ok()) return clock.status();
  for (uint32_t i = 0; i < vp_count(); ++i) {
    if (absl::Status s = synics_[i]->RestoreState(state.synics(i)); !s.ok())
      return s;
  }
  clock_ = *clock;
  absl::MutexLock lock(&mu_);
  guest_os_id_ = state.guest_os_id();
  hypercall_ = state.hypercall();
  tsc_sequence_ = state.tsc_sequence();
  std::copy(state.assist_pages().begin(), state.assist_pages().end(),
            assist_pages_.begin());
  std::copy(state.crash_params().begin(), state.crash_params().end(),
            crash_params_.begin());
  saved_page_.reset();
  if (PageEnabled(hypercall_)) {
    std::array<uint8_t, kPageSize> original;
    std::memcpy(original.data(), state.hypercall_page_original().data(),
                kPageSize);
    saved_page_ = original;
  }
  reference_tsc_ = 0;
  // Re-publishes scale and offset (the offset moved with the clock) with a
  // new sequence, as a guest write of the same value would.
  const MsrResult r = WriteReferenceTscLocked(state.reference_tsc());
  if (r.inject_gp) return bad("REFERENCE_TSC", state.reference_tsc());
  return absl::OkStatus();
}

}  // namespace hvcore::hyperv
