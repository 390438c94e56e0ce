#ifndef HVSTACK_VMWP_VMBUS_VSP_H_
#define HVSTACK_VMWP_VMBUS_VSP_H_

#include <array>
#include <cstdint>
#include <memory>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vmwp/vmbus/channel_messages.h"
#include "vmwp/vmbus/ring_buffer.h"

namespace vmbus {

// What a VSP sees of an open channel: the host's send side. Safe to use from
// any thread while the channel is open; after close, sends fail.
class ChannelEndpoint {
 public:
  virtual ~ChannelEndpoint() = default;
  virtual uint32_t relid() const = 0;
  // Writes a packet to the guest's inbound ring and signals the guest when
  // the protocol says so. written == false: the ring is full; the guest will
  // signal when space frees (Vsp::OnSignal), then send again.
  virtual absl::StatusOr<WriteResult> Send(
      uint16_t type, uint16_t flags, uint64_t trans_id,
      std::span<const uint8_t> payload) = 0;
};

// What the server offers the guest for a VSP.
struct VspOffer {
  Guid interface_type;
  Guid interface_instance;
  uint16_t channel_flags = 0;
  uint16_t mmio_megabytes = 0;
  std::array<uint8_t, 120> user_defined{};
  uint16_t sub_channel_index = 0;
  // Largest packet the VSP accepts from the guest (bytes, descriptor
  // included); larger ones break the channel. 0: whatever fits the ring.
  uint32_t max_packet_size = 0;
  // Ring sizes (data bytes, per direction) the VSP accepts at OPENCHANNEL.
  uint32_t min_ring_data_bytes = 4096;
  uint32_t max_ring_data_bytes = 64u << 20;
};

// A virtual service provider: the host half of one synthetic device. The
// server calls it from VP threads: OnOpen/OnClose under the server's lock
// (they must not call back into the server), OnPacket/OnSignal serialized
// per channel.
class Vsp {
 public:
  virtual ~Vsp() = default;
  virtual const VspOffer& offer() const = 0;
  // The guest opened the channel; `user_data` is OPENCHANNEL's 120 bytes.
  // An error fails the open (the guest sees a non-zero status).
  virtual absl::Status OnOpen(std::shared_ptr<ChannelEndpoint> endpoint,
                              std::span<const uint8_t> user_data) = 0;
  // One packet from the guest, already validated against the ring layout.
  virtual void OnPacket(ChannelEndpoint& endpoint, const Packet& packet) = 0;
  // The guest signalled and every packet has been delivered: a good moment
  // to retry a send that found the ring full.
  virtual void OnSignal(ChannelEndpoint& endpoint) {}
  // The channel closed (CLOSECHANNEL, rescind, UNLOAD, or a broken ring).
  virtual void OnClose(uint32_t relid) = 0;
};

}  // namespace vmbus

#endif  // HVSTACK_VMWP_VMBUS_VSP_H_
