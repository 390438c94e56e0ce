#include "hvcore/hyperv/hv_partition.h"

#include <algorithm>
#include <atomic>

#include "absl/strings/str_format.h"

namespace hvcore::hyperv {
namespace {

uint64_t PageBase(uint64_t reg) { return reg & kMsrPageAddressMask; }
bool PageEnabled(uint64_t reg) { return (reg & kMsrPageEnable) != 0; }

// An enabled page must be RAM (the TLFS: "a #GP fault will result" for a
// hypercall page beyond the GPA space; KVM does the same for the others).
// Bits 11:1 are RsvdP and stored as written.
bool ValidPageMsr(GuestRam& ram, uint64_t value) {
  return !PageEnabled(value) || IsRam(ram, PageBase(value), kPageSize);
}

}  // namespace

absl::StatusOr<std::unique_ptr<HvPartition>> HvPartition::Create(
    const HvPartitionConfig& config, GuestRam& ram, GuestTscSource& tsc,
    SintInjector& injector, GuestCrashHandler* crash_handler) {
  if (config.vp_count == 0) {
    return absl::InvalidArgumentError("a partition needs at least one VP");
  }
  absl::StatusOr<ReferenceClock> clock =
      ReferenceClock::Create(config.tsc_hz, config.tsc_at_start);
  if (!clock.ok()) return clock.status();
  return std::unique_ptr<HvPartition>(
      new HvPartition(config, *clock, ram, tsc, injector, crash_handler));
}

HvPartition::HvPartition(const HvPartitionConfig& config,
                         const ReferenceClock& clock, GuestRam& ram,
                         GuestTscSource& tsc, SintInjector& injector,
                         GuestCrashHandler* crash_handler)
    : config_(config),
      clock_(clock),
      ram_(ram),
      tsc_(tsc),
      crash_handler_(crash_handler),
      dispatcher_(ram, connections_) {
  for (uint32_t i = 0; i < config.vp_count; ++i) {
    synics_.push_back(std::make_unique<Synic>(
        i, ram, injector, config.max_queued_messages_per_sint));
  }
  absl::MutexLock lock(&mu_);
  assist_pages_.assign(config.vp_count, 0);
}

MsrResult HvPartition::ReadMsr(uint32_t vp_index, uint32_t msr) {
  const MsrResult result = DoReadMsr(vp_index, msr);
  stats_.RecordMsr(msr, /*write=*/false, result.inject_gp);
  return result;
}

MsrResult HvPartition::WriteMsr(uint32_t vp_index, uint32_t msr,
                                uint64_t value) {
  const MsrResult result = DoWriteMsr(vp_index, msr, value);
  stats_.RecordMsr(msr, /*write=*/true, result.inject_gp);
  return result;
}

HypercallOutcome HvPartition::Hypercall(uint32_t vp_index,
                                        const HypercallArgs& args,
                                        const HypercallCaller& caller) {
  const HypercallOutcome outcome = DoHypercall(vp_index, args, caller);
  stats_.RecordHypercall(static_cast<uint16_t>(args.control & kHcCodeMask),
                         outcome.inject_ud, outcome.result);
  return outcome;
}

MsrResult HvPartition::DoReadMsr(uint32_t vp_index, uint32_t msr) {
  if (vp_index >= vp_count()) return MsrResult::Gp();
  if (Synic::IsSynicMsr(msr)) return synics_[vp_index]->ReadMsr(msr);
  switch (msr) {
    case kMsrVpIndex:
      return MsrResult::Ok(vp_index);
    case kMsrTimeRefCount:
      return MsrResult::Ok(clock_.At(tsc_.ReadGuestTsc()));
    case kMsrTscFrequency:
      return MsrResult::Ok(config_.tsc_hz);
    case kMsrApicFrequency:
      return MsrResult::Ok(config_.apic_hz);
    default:
      break;
  }
  absl::MutexLock lock(&mu_);
  switch (msr) {
    case kMsrGuestOsId:
      return MsrResult::Ok(guest_os_id_);
    case kMsrHypercall:
      return MsrResult::Ok(hypercall_);
    case kMsrReferenceTsc:
      return MsrResult::Ok(reference_tsc_);
    case kMsrVpAssistPage:
      return MsrResult::Ok(assist_pages_[vp_index]);
    case kMsrCrashCtl:
      // Reads tell the guest which notifications we take.
      return MsrResult::Ok(kCrashCtlNotify | kCrashCtlNotifyMsg);
    default:
      if (msr >= kMsrCrashP0 && msr <= kMsrCrashP4) {
        return MsrResult::Ok(crash_params_[msr - kMsrCrashP0]);
      }
      return MsrResult::Gp();
  }
}

MsrResult HvPartition::DoWriteMsr(uint32_t vp_index, uint32_t msr,
                                  uint64_t value) {
  if (vp_index >= vp_count()) return MsrResult::Gp();
  if (Synic::IsSynicMsr(msr)) return synics_[vp_index]->WriteMsr(msr, value);
  if (msr == kMsrCrashCtl) {
    if (!(value & kCrashCtlNotify)) return MsrResult::Ok();
    GuestCrashReport report;
    {
      absl::MutexLock lock(&mu_);
      report = MakeCrashReportLocked(vp_index, value);
      last_crash_ = report;
    }
    if (crash_handler_ != nullptr) crash_handler_->OnGuestCrash(report);
    return MsrResult::Ok();
  }
  absl::MutexLock lock(&mu_);
  if (msr >= kMsrCrashP0 && msr <= kMsrCrashP4) {
    crash_params_[msr - kMsrCrashP0] = value;
    return MsrResult::Ok();
  }
  switch (msr) {
    case kMsrGuestOsId:
      guest_os_id_ = value;
      // TLFS: clearing the OS id disables the hypercall page.
      if (value == 0 && PageEnabled(hypercall_)) {
        RemoveHypercallPageLocked();
        hypercall_ &= ~kMsrPageEnable;
      }
      return MsrResult::Ok();
    case kMsrHypercall:
      return WriteHypercallLocked(value);
    case kMsrReferenceTsc:
      return WriteReferenceTscLocked(value);
    case kMsrVpAssistPage:
      if (!ValidPageMsr(ram_, value)) return MsrResult::Gp();
      assist_pages_[vp_index] = value;
      return MsrResult::Ok();
    default:
      // Read-only (VP_INDEX, TIME_REF_COUNT, the frequencies) or not
      // implemented.
      return MsrResult::Gp();
  }
}

GuestCrashReport HvPartition::MakeCrashReportLocked(uint32_t vp_index,
                                                    uint64_t ctl) {
  GuestCrashReport report{.vp_index = vp_index, .params = crash_params_};
  if (ctl & kCrashCtlNotifyMsg) {
    // Linux: P3 = GPA of its kmsg page, P4 = bytes written (at most a page).
    const uint64_t gpa = crash_params_[3];
    const uint64_t len = std::min<uint64_t>(crash_params_[4], kPageSize);
    if (const uint8_t* text = ram_.HostPointer(gpa, len)) {
      report.message.assign(reinterpret_cast<const char*>(text), len);
    }
  }
  return report;
}

std::optional<GuestCrashReport> HvPartition::last_guest_crash() {
  absl::MutexLock lock(&mu_);
  return last_crash_;
}

void HvPartition::RemoveHypercallPageLocked() {
  if (saved_page_.has_value()) {
    (void)WriteGuest(ram_, PageBase(hypercall_), *saved_page_);
    saved_page_.reset();
  }
}

MsrResult HvPartition::WriteHypercallLocked(uint64_t value) {
  // TLFS: once locked, only a reset unlocks; the page cannot move.
  if (hypercall_ & kHypercallLocked) return MsrResult::Ok();
  if (!ValidPageMsr(ram_, value)) return MsrResult::Gp();
  // TLFS: without a guest OS id "the enable bit will remain zero even if a
  // one is written to it".
  if (guest_os_id_ == 0) value &= ~kMsrPageEnable;
  const bool same_page = PageEnabled(hypercall_) && PageEnabled(value) &&
                         PageBase(hypercall_) == PageBase(value);
  if (!same_page) {
    RemoveHypercallPageLocked();
    if (PageEnabled(value)) {
      std::array<uint8_t, kPageSize> original;
      // Both calls succeed: ValidPageMsr checked the page is RAM.
      (void)ReadGuest(ram_, PageBase(value), original);
      saved_page_ = original;
      (void)WriteGuest(ram_, PageBase(value),
                       BuildHypercallPage(config_.hypercall_port));
    }
  }
  hypercall_ = value;
  return MsrResult::Ok();
}

MsrResult HvPartition::WriteReferenceTscLocked(uint64_t value) {
  if (!ValidPageMsr(ram_, value)) return MsrResult::Gp();
  if (!PageEnabled(value)) {
    reference_tsc_ = value;
    return MsrResult::Ok();
  }
  const uint64_t base = PageBase(value);
  std::atomic<uint64_t>* sequence = GuestWord(ram_, base);
  std::atomic<uint64_t>* scale = GuestWord(ram_, base + 8);
  std::atomic<uint64_t>* offset = GuestWord(ram_, base + 16);
  if (sequence == nullptr || scale == nullptr || offset == nullptr) {
    return MsrResult::Gp();  // RAM whose host view is not 8-byte aligned
  }
  // Other VPs may be reading the page. Sequence 0 first sends them to the
  // MSR while scale and offset change; then a new, valid sequence (never 0,
  // never all ones, which older guests also treat as invalid).
  // The seqlock writer's order: sequence 0, fence, data, new sequence.
  sequence->store(0, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  scale->store(clock_.scale(), std::memory_order_relaxed);
  offset->store(static_cast<uint64_t>(clock_.offset()),
                std::memory_order_relaxed);
  if (++tsc_sequence_ == 0xFFFFFFFF || tsc_sequence_ == 0) tsc_sequence_ = 1;
  sequence->store(tsc_sequence_, std::memory_order_release);
  reference_tsc_ = value;
  return MsrResult::Ok();
}

HypercallOutcome HvPartition::DoHypercall(uint32_t vp_index,
                                          const HypercallArgs& args,
                                          const HypercallCaller& caller) {
  // TLFS: only from CPL 0 in protected mode, else #UD. Our page's code is
  // 64-bit only, so a 32-bit caller's registers would be garbage: #UD too.
  if (vp_index >= vp_count() || caller.cpl != 0 || !caller.long_mode) {
    return {.inject_ud = true};
  }
  {
    absl::MutexLock lock(&mu_);
    if (!PageEnabled(hypercall_)) return {.inject_ud = true};
  }
  return {.inject_ud = false, .result = dispatcher_.Dispatch(vp_index, args)};
}

absl::Status HvPartition::PostMessage(uint32_t vp_index, uint32_t sint,
                                      uint32_t message_type,
                                      std::span<const uint8_t> payload) {
  if (vp_index >= vp_count()) {
    return absl::NotFoundError(absl::StrFormat("no VP %d", vp_index));
  }
  return synics_[vp_index]->PostMessage(sint, message_type, payload);
}

absl::Status HvPartition::SignalEvent(uint32_t vp_index, uint32_t sint,
                                      uint32_t flag) {
  if (vp_index >= vp_count()) {
    return absl::NotFoundError(absl::StrFormat("no VP %d", vp_index));
  }
  return synics_[vp_index]->SignalEvent(sint, flag);
}

void HvPartition::Reset() {
  for (auto& synic : synics_) synic->Reset();
  absl::MutexLock lock(&mu_);
  guest_os_id_ = 0;
  hypercall_ = 0;
  reference_tsc_ = 0;
  saved_page_.reset();
  assist_pages_.assign(assist_pages_.size(), 0);
  crash_params_ = {};
}

}  // namespace hvcore::hyperv
