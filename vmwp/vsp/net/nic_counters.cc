#include "vmwp/vsp/net/nic_counters.h"

namespace vsp::net {

const char* DropName(Drop d) {
  switch (d) {
    case Drop::kFromGuestTapWrite:
      return "from_guest_tap_write";
    case Drop::kFromGuestOversized:
      return "from_guest_oversized";
    case Drop::kFromGuestMalformed:
      return "from_guest_malformed";
    case Drop::kFromGuestNotReady:
      return "from_guest_not_ready";
    case Drop::kFromGuestLinkDown:
      return "from_guest_link_down";
    case Drop::kFromGuestUnsupported:
      return "from_guest_unsupported_offload";
    case Drop::kToGuestNotReady:
      return "to_guest_not_ready";
    case Drop::kToGuestNoBuffer:
      return "to_guest_no_buffer";
    case Drop::kToGuestLinkDown:
      return "to_guest_link_down";
    case Drop::kToGuestBadFrame:
      return "to_guest_bad_frame";
    case Drop::kToGuestTapRead:
      return "to_guest_tap_read";
    case Drop::kToGuestChannelDown:
      return "to_guest_channel_down";
    case Drop::kCount:
      break;
  }
  return "unknown";
}

const char* NoteName(Note n) {
  switch (n) {
    case Note::kToGuestFiltered:
      return "to_guest_filtered";
    case Note::kToGuestRefusedByGuest:
      return "to_guest_refused_by_guest";
    case Note::kCount:
      break;
  }
  return "unknown";
}

bool IsFromGuest(Drop d) { return d < Drop::kToGuestNotReady; }

uint64_t NicCounters::FromGuestDrops() const {
  uint64_t sum = 0;
  for (int i = 0; i < static_cast<int>(Drop::kCount); ++i) {
    if (IsFromGuest(static_cast<Drop>(i))) sum += drop(static_cast<Drop>(i));
  }
  return sum;
}

uint64_t NicCounters::ToGuestDrops() const {
  uint64_t sum = 0;
  for (int i = 0; i < static_cast<int>(Drop::kCount); ++i) {
    if (!IsFromGuest(static_cast<Drop>(i))) sum += drop(static_cast<Drop>(i));
  }
  return sum;
}

std::map<std::string, uint64_t> NicCounters::ByReason() const {
  std::map<std::string, uint64_t> out;
  for (int i = 0; i < static_cast<int>(Drop::kCount); ++i) {
    if (uint64_t n = drop(static_cast<Drop>(i)); n != 0)
      out[DropName(static_cast<Drop>(i))] = n;
  }
  for (int i = 0; i < static_cast<int>(Note::kCount); ++i) {
    if (uint64_t n = note(static_cast<Note>(i)); n != 0)
      out[NoteName(static_cast<Note>(i))] = n;
  }
  return out;
}

}  // namespace vsp::net
