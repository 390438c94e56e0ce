#ifndef HVSTACK_VMWP_VSP_NET_NETVSP_SESSION_H_
#define HVSTACK_VMWP_VSP_NET_NETVSP_SESSION_H_

// One open netvsc channel: the NVSP state machine (version, NDIS version and
// config, receive and send buffers), RNDIS on top of it (control messages to
// the RndisDevice, data packets both ways), and flow control. Single-
// threaded: the adapter's device thread owns it and hands it what it drained
// from the channel and read from the TAP device; it never blocks.
//
// Guest -> host: SEND_RNDIS_PKT names one or more RNDIS messages in a send-
// buffer section and/or GPA-direct ranges (the section first, then the
// ranges: Linux puts a batch of messages, or a batch plus the last message's
// RNDIS header, in the section and the last frame's data in the ranges). The
// bytes are copied out once, parsed, frames written to the TAP device, and
// the packet completed (FAIL if anything in it was malformed).
//
// Host -> guest: each frame (or control response) goes into one receive-
// buffer section behind an RNDIS packet header; up to kMaxRangesPerPacket
// sections travel in one transfer-page packet, and come back free with the
// guest's SEND_RNDIS_PKT_COMPLETE for that packet.
//
// Flow control: completions and transfer-page packets that find the guest's
// inbound ring full wait here (the ring writer asked the guest to signal
// when space frees); while completions wait, the adapter stops draining the
// guest's ring, and while a data packet waits or no section is free it stops
// reading the TAP device (frames then wait in the TAP's own queue, which the
// kernel bounds). Nothing queues without a bound.

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "base/log_rate_limiter.h"
#include "vmwp/vmbus/vsp.h"
#include "vmwp/vsp/net/lent_buffer.h"
#include "vmwp/vsp/net/nic_counters.h"
#include "vmwp/vsp/net/nvsp.h"
#include "vmwp/vsp/net/rndis_device.h"

namespace vsp::net {

// Where frames from the guest go (the TAP device; tests capture them).
class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // One frame as up to 4 pieces. An error drops it (counted by the caller).
  virtual absl::Status WriteFrame(
      std::span<const std::span<const uint8_t>> pieces) = 0;
};

class NetvspSession {
 public:
  struct Limits {
    // Receive buffer: Linux's default is 16 MiB, its maximum 31 MiB.
    uint32_t min_receive_buffer = 64 * 1024;
    uint32_t max_receive_buffer = 32u << 20;
    // Send buffer: Linux's default 1 MiB, maximum 15 MiB.
    uint32_t min_send_buffer = 16 * 1024;
    uint32_t max_send_buffer = 32u << 20;
    // Completions waiting for room before draining stops.
    uint32_t max_pending_completions = 256;
    // Control responses waiting for a receive section or ring room.
    uint32_t max_pending_control = 64;
  };
  static constexpr uint32_t kSendSectionSize = 6144;  // what Hyper-V offers
  static constexpr uint32_t kMaxRangesPerPacket = 32;
  // GPA-direct bytes one SEND_RNDIS_PKT may name (a jumbo frame and headers).
  static constexpr uint32_t kMaxGpaDirectBytes = 64 * 1024;

  // The receive section size for an MTU: an RNDIS packet header, room for
  // per-packet info, and the largest frame, rounded to 64 bytes (1728, as
  // Hyper-V, for an MTU of 1500).
  static uint32_t ReceiveSectionSize(uint32_t mtu);

  // `buffers` is the adapter's registry of lent buffers (its
  // OnGpadlTeardown revokes them from a VP thread).
  NetvspSession(std::shared_ptr<vmbus::ChannelEndpoint> endpoint,
                RndisDevice& device, FrameSink& sink, NicCounters& counters,
                LentBuffers& buffers, std::string name, Limits limits);
  ~NetvspSession();
  NetvspSession(const NetvspSession&) = delete;
  NetvspSession& operator=(const NetvspSession&) = delete;

  // A packet drained from the guest's ring.
  void HandlePacket(const vmbus::Packet& packet);
  // Retries completions and packets that found the guest's ring full.
  void Flush();

  // May more guest packets be drained now?
  bool CanDrain() const;
  // Does the guest take frames at all (buffer, RNDIS initialized, a packet
  // filter)? Frames for a guest that does not are dropped and counted.
  bool Ready() const;
  // Can a frame be queued for the guest right now (Ready, a free section,
  // no data packet waiting for ring room)?
  bool CanReceive() const;
  // Queues one frame for the guest (filtered, checked, copied into a
  // section); the packet goes out at FlushReceive or when it is full.
  void DeliverFrame(std::span<const uint8_t> frame);
  void FlushReceive();

  // The host connects or disconnects the adapter: an indication to the
  // guest if it is listening.
  void SetLink(bool up);
  // The guest tore down the GPADL `handle` (already revoked): forget it.
  void OnGpadlRevoked(uint32_t handle);

  // The channel broke or closed under the session: nothing more is sent.
  bool dead() const { return dead_; }
  uint32_t nvsp_version() const { return nvsp_version_; }
  size_t free_sections() const { return free_sections_.size(); }
  size_t receive_sections() const { return receive_section_count_; }
  size_t pending_completions() const { return pending_completions_.size(); }

 private:
  struct RxPacket {
    uint64_t trans_id = 0;
    uint32_t channel_type = 0;
    std::vector<uint32_t> sections;
    std::vector<uint8_t> extension;  // TransferPageHeader + ranges
    uint64_t frames = 0;
    uint64_t bytes = 0;
  };
  struct Completion {
    uint64_t trans_id;
    std::vector<uint8_t> payload;
  };

  void ProtocolError(const absl::Status& s);
  void Complete(uint64_t trans_id, std::span<const uint8_t> payload);
  template <typename T>
  void CompleteNvsp(uint64_t trans_id, uint32_t type, const T& body) {
    NvspMessage m = MakeNvsp(type, body);
    Complete(trans_id, Bytes(m));
  }
  absl::Status Send(uint16_t type, uint16_t flags, uint64_t trans_id,
                    std::span<const uint8_t> extension,
                    std::span<const uint8_t> payload, bool* written);

  void OnInit(const vmbus::Packet& p, const NvspView& v);
  void OnSendReceiveBuffer(const vmbus::Packet& p, const NvspView& v);
  void OnSendSendBuffer(const vmbus::Packet& p, const NvspView& v);
  void OnRevoke(const NvspView& v, bool receive);
  void OnRndisPacket(const vmbus::Packet& p, const NvspView& v);
  void OnReceiveCompletion(const vmbus::Packet& p, const NvspView& v);
  // One RNDIS message from the guest; false if it was malformed.
  bool HandleRndis(const RndisView& m);
  bool HandleDataPacket(const RndisView& m);
  // A control response or indication for the guest.
  void SendControl(std::vector<uint8_t> message);
  bool TrySendControl(const std::vector<uint8_t>& message);
  void StartBatch();
  bool SendRx(RxPacket& packet);  // true: sent (or dropped: channel dead)
  void FreeSections(const std::vector<uint32_t>& sections);
  void DropReceiveBuffer();
  void Die(const absl::Status& s);

  const std::shared_ptr<vmbus::ChannelEndpoint> endpoint_;
  RndisDevice& device_;
  FrameSink& sink_;
  NicCounters& counters_;
  LentBuffers& buffers_;
  const std::string name_;
  const Limits limits_;
  base::LogRateLimiter errors_log_;

  bool dead_ = false;
  uint32_t nvsp_version_ = 0;
  uint32_t ndis_version_ = 0;
  uint32_t guest_mtu_ = 0;  // from SEND_NDIS_CONFIG (MTU + 14)

  std::shared_ptr<LentBuffer> receive_buffer_;
  uint32_t receive_section_size_ = 0;
  uint32_t receive_section_count_ = 0;
  std::vector<uint32_t> free_sections_;
  std::shared_ptr<LentBuffer> send_buffer_;
  uint32_t send_section_count_ = 0;

  uint64_t next_trans_id_ = 1;
  absl::flat_hash_map<uint64_t, std::vector<uint32_t>> in_flight_;
  std::optional<RxPacket> batch_;    // being filled by DeliverFrame
  std::deque<RxPacket> pending_rx_;  // found the ring full
  std::deque<std::vector<uint8_t>> pending_control_;  // no section yet
  std::deque<Completion> pending_completions_;
  bool link_indicated_ = false;

  std::vector<uint8_t> scratch_;  // a SEND_RNDIS_PKT's bytes, copied once
};

}  // namespace vsp::net

#endif  // HVSTACK_VMWP_VSP_NET_NETVSP_SESSION_H_
