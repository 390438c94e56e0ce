#ifndef HVSTACK_VMWP_VSP_NET_NIC_COUNTERS_H_
#define HVSTACK_VMWP_VSP_NET_NIC_COUNTERS_H_

// What an adapter counts: written by its device thread, read by anyone
// (the worker's status). Plain atomics, relaxed: each counter is exact on
// its own; a reader may see one updated before another.

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>

namespace vsp::net {

enum class Drop : int {
  // Guest -> TAP.
  kFromGuestTapWrite,     // the TAP write failed (queue full, device down)
  kFromGuestOversized,    // larger than the MTU allows
  kFromGuestMalformed,    // a bad RNDIS packet, a frame shorter than 14
  kFromGuestNotReady,     // before RNDIS INIT / after HALT
  kFromGuestLinkDown,     // SetNicLink(false)
  kFromGuestUnsupported,  // asks for an offload that was not offered (LSO)
  // TAP -> guest.
  kToGuestNotReady,  // no receive buffer, RNDIS not initialized, filter 0
  kToGuestNoBuffer,  // every receive section in use
  kToGuestLinkDown,
  kToGuestBadFrame,     // shorter than an Ethernet header or over the MTU
  kToGuestTapRead,      // the TAP refused a frame (GSO, bad checksum area)
  kToGuestChannelDown,  // the channel closed or broke with frames queued
  kCount,
};
// Not drops: frames the guest's packet filter does not want (another MAC on
// a flooding bridge), and receives the guest completed with an error.
enum class Note : int {
  kToGuestFiltered,
  kToGuestRefusedByGuest,
  kCount,
};

const char* DropName(Drop d);  // "from_guest_tap_write", ...
const char* NoteName(Note n);  // "to_guest_filtered", ...
bool IsFromGuest(Drop d);

struct NicCounters {
  std::atomic<uint64_t> from_guest_packets{0};
  std::atomic<uint64_t> from_guest_bytes{0};
  std::atomic<uint64_t> to_guest_packets{0};
  std::atomic<uint64_t> to_guest_bytes{0};
  std::atomic<uint64_t> protocol_errors{0};
  std::array<std::atomic<uint64_t>, static_cast<int>(Drop::kCount)> drops{};
  std::array<std::atomic<uint64_t>, static_cast<int>(Note::kCount)> notes{};
  std::atomic<uint32_t> nvsp_version{0};
  std::atomic<uint32_t> packet_filter{0};
  std::atomic<bool> guest_ready{false};
  std::atomic<bool> link_up{true};

  void Count(Drop d, uint64_t n = 1) {
    drops[static_cast<int>(d)].fetch_add(n, std::memory_order_relaxed);
  }
  void Count(Note what, uint64_t n = 1) {
    notes[static_cast<int>(what)].fetch_add(n, std::memory_order_relaxed);
  }
  uint64_t drop(Drop d) const {
    return drops[static_cast<int>(d)].load(std::memory_order_relaxed);
  }
  uint64_t note(Note n) const {
    return notes[static_cast<int>(n)].load(std::memory_order_relaxed);
  }
  uint64_t FromGuestDrops() const;
  uint64_t ToGuestDrops() const;
  // Non-zero drops and notes by name.
  std::map<std::string, uint64_t> ByReason() const;
};

}  // namespace vsp::net

#endif  // HVSTACK_VMWP_VSP_NET_NIC_COUNTERS_H_
