#ifndef HVSTACK_VMWP_VMBUS_VSP_H_
#define HVSTACK_VMWP_VMBUS_VSP_H_

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "vmwp/vmbus/channel_messages.h"
#include "vmwp/vmbus/gpa_direct.h"
#include "vmwp/vmbus/guest_pages.h"
#include "vmwp/vmbus/ring_buffer.h"

namespace vmbus {

class Vsp;

// What a VSP sees of an open channel: the host's send side, its own
// draining (VSPs that drain on a thread of their own), and the guest memory
// the guest names in the channel's packets. Safe to use from any thread
// while the channel is open; after close, sends fail and drains deliver
// nothing.
class ChannelEndpoint {
 public:
  virtual ~ChannelEndpoint() = default;
  virtual uint32_t relid() const = 0;
  // Writes a packet to the guest's inbound ring and signals the guest when
  // the protocol says so. written == false: the ring is full; the guest will
  // signal when space frees (Vsp::OnSignal), then send again.
  absl::StatusOr<WriteResult> Send(uint16_t type, uint16_t flags,
                                   uint64_t trans_id,
                                   std::span<const uint8_t> payload) {
    return Send(type, flags, trans_id, {}, payload);
  }
  // The same with `extension` between the descriptor and the payload
  // (offset8 covers it): a transfer-page header, GPA ranges ...
  virtual absl::StatusOr<WriteResult> Send(
      uint16_t type, uint16_t flags, uint64_t trans_id,
      std::span<const uint8_t> extension, std::span<const uint8_t> payload) = 0;

  // For VSPs that drain on their own thread (VspOffer::drain_on_vp_thread
  // false): delivers up to `budget` packets from the guest's outbound ring
  // to vsp.OnPacket on the calling thread. true: the budget ran out and
  // packets may remain; the guest does not signal for those (interrupts stay
  // masked), so call again. false: the ring is empty (vsp.OnSignal was
  // called) or the channel is closed. An error: the ring is broken and the
  // channel dead for good. Do not hold locks OnClose or OnGpadlTeardown take.
  virtual absl::StatusOr<bool> Drain(Vsp& vsp, uint32_t budget) = 0;

  // Guest RAM, for the GPA-direct ranges of the channel's packets
  // (ParseGpaDirect / ResolveGpaRanges).
  virtual GuestPages& memory() = 0;
  // A GPADL the guest created for this channel (not its ring), as one
  // page-aligned range of host pages. NotFound if there is none with that
  // handle for this channel. The pages stay valid as long as guest RAM;
  // Vsp::OnGpadlTeardown says when the guest takes them back.
  virtual absl::StatusOr<MappedGpadl> MapGpadl(uint32_t handle) = 0;
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
  // true: the server drains the channel on the VP thread that signalled and
  // calls OnPacket there. false: it only calls OnGuestSignal there, and the
  // VSP drains with ChannelEndpoint::Drain on a thread of its own (device
  // I/O never runs on a VP thread).
  bool drain_on_vp_thread = true;
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
  // VSPs with drain_on_vp_thread == false: the guest signalled the channel
  // (new packets, or room in its inbound ring). Called on the VP thread:
  // wake the VSP's thread and return.
  virtual void OnGuestSignal(ChannelEndpoint& endpoint) {}
  // The channel closed (CLOSECHANNEL, rescind, UNLOAD, or a broken ring).
  virtual void OnClose(uint32_t relid) = 0;
  // The guest tore down GPADL `handle` of channel `relid` (not a ring): stop
  // using its pages before returning (GPADL_TORNDOWN goes out after this).
  // Called under the server's lock, like OnClose.
  virtual void OnGpadlTeardown(uint32_t relid, uint32_t handle) {}

  // ---- Save and restore (issue 14; vmwp/README.md "Saved state").
  //
  // A VM's state leaves its worker with every VP paused and comes back in a
  // fresh worker before any VP runs. The VMBus server saves what it owns
  // itself: the connection (version, message SINT), the offers and relids,
  // every GPADL, and for an open channel its ring GPADL, target VP, the
  // OPENCHANNEL user data and the host-side ring indices (the rings
  // themselves are guest memory, saved with it). A VSP saves only what it
  // keeps beyond that.
  //
  // Saving, in this order (the worker's service thread; every VP is held, so
  // no OnPacket/OnSignal runs or starts meanwhile):
  //   1. Quiesce(deadline): complete or drain everything in flight: backend
  //      I/O finished and its completion packets written to the ring (or, if
  //      the ring is full, kept for SaveState), timers stopped, and no thread
  //      of the VSP touches guest memory or sends on the channel until
  //      Unquiesce or destruction (netvsp: stop taking frames from the TAP).
  //      DeadlineExceeded (or any error) if that cannot happen in time: the
  //      save fails, naming the VSP, and Unquiesce follows.
  //   2. SaveState(): the VSP's own state, a serialized protobuf message of
  //      its own that carries its own format version (e.g. a
  //      `uint32 version = 1` field), next to the VSP's code. Called whether
  //      or not the channel is open. Empty: nothing to save.
  //   3. Unquiesce(): the VM goes on in this worker (a checkpoint of a running
  //      VM, or a save that failed). Not called when the worker ends after
  //      the save.
  //
  // Restoring (a fresh worker, from the same VM configuration): the VSP is
  // constructed as for a boot and registered with AddVsp in the same order
  // (the server checks the offers against the saved ones), then, before any
  // VP runs, RestoreState is called instead of OnOpen: `endpoint` is the
  // channel's restored endpoint if the channel was open when saved (else
  // null), `state` is what SaveState returned. An error (a version it cannot
  // read, a value out of range: the bytes come from a file and are
  // untrusted) fails the restore with a message naming the VSP and the field,
  // and the VM stays Saved. Packets and signals may arrive right after the
  // VPs start.
  //
  // Defaults, for a VSP that has not implemented save/restore: Quiesce and
  // Unquiesce do nothing, SaveState is Unimplemented (the server then refuses
  // to save a VM whose channel to this VSP is open, naming it, and saves no
  // state for a closed one), RestoreState accepts only "closed, no state".
  virtual absl::Status Quiesce(absl::Time deadline) { return absl::OkStatus(); }
  virtual absl::StatusOr<std::string> SaveState() {
    return absl::UnimplementedError("this VSP cannot save its state");
  }
  virtual void Unquiesce() {}
  virtual absl::Status RestoreState(std::shared_ptr<ChannelEndpoint> endpoint,
                                    std::string_view state) {
    if (endpoint != nullptr || !state.empty()) {
      return absl::UnimplementedError("this VSP cannot restore saved state");
    }
    return absl::OkStatus();
  }
};

}  // namespace vmbus

#endif  // HVSTACK_VMWP_VMBUS_VSP_H_
