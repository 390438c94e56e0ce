#ifndef HVSTACK_VMWP_VMBUS_SERVER_H_
#define HVSTACK_VMWP_VMBUS_SERVER_H_

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/log_rate_limiter.h"
#include "vmwp/vmbus/channel.h"
#include "vmwp/vmbus/channel_messages.h"
#include "vmwp/vmbus/gpadl.h"
#include "vmwp/vmbus/guest_pages.h"
#include "vmwp/vmbus/synic_seam.h"
#include "vmwp/vmbus/vsp.h"

namespace hvstack::saved {
class VmbusServerState;
}  // namespace hvstack::saved

namespace vmbus {

// The host side of a VMBus connection: version negotiation, offers, GPADLs,
// channel open/close, rescind and unload, as Linux's hv_vmbus expects them.
// Guest messages arrive through SynicGuestCalls (from VP threads); replies
// leave through the SynicPort. A message that is malformed or out of order
// is dropped with an error (HandleMessage returns it; OnPostMessage logs it)
// and, where Linux would otherwise wait forever, answered with a failure
// status. Nothing the guest sends can crash the worker.
class VmbusServer final : public SynicGuestCalls {
 public:
  struct Options {
    uint32_t vp_count = 1;
    // Bounds on what one guest may make the host hold.
    uint32_t max_gpadls = 4096;
    uint32_t max_pending_gpadls = 64;
    // Called by AddVsp with the new channel's relid before its offer can
    // reach the guest (under the server's lock: it must not call back into
    // the server). The SynIC adapter registers the channel's event port
    // here, so that a guest that opens a channel offered at run time (a
    // sub-channel) can signal it at once. An error fails AddVsp.
    std::function<absl::Status(uint32_t relid)> on_channel_added;
  };

  // Versions offered, newest first (the order of Linux's vmbus_versions[]).
  static constexpr uint32_t kSupportedVersions[] = {
      kVersionWin10V5_3, kVersionWin10V5_2, kVersionWin10V5_1,
      kVersionWin10V5,   kVersionWin10V4_1, kVersionWin10,
      kVersionWin8_1,    kVersionWin8,      kVersionWin7};
  // Relids start at 1 (0 is the message "channel"); channel connection ids
  // are relid + this, inside the 24-bit hv_connection_id.
  static constexpr uint32_t kChannelConnectionIdBase = 0x10000;
  // The connection id the guest signals channel `relid` on: the SynIC
  // adapter registers an event port for it when AddVsp returns the relid.
  static constexpr uint32_t ConnectionIdForRelid(uint32_t relid) {
    return kChannelConnectionIdBase + relid;
  }
  static constexpr uint32_t kMaxRelid = 2047;
  // NTSTATUS STATUS_UNSUCCESSFUL: what Linux sees in a failed
  // GPADL_CREATED / OPENCHANNEL_RESULT.
  static constexpr uint32_t kStatusUnsuccessful = 0xC0000001;

  VmbusServer(GuestPages& memory, SynicPort& synic, Options options);
  ~VmbusServer() override;
  VmbusServer(const VmbusServer&) = delete;
  VmbusServer& operator=(const VmbusServer&) = delete;

  // Registers a VSP (not owned; must outlive the server) and returns its
  // relid. If the guest already asked for offers, the offer goes out now.
  absl::StatusOr<uint32_t> AddVsp(Vsp* vsp);
  // Host-initiated removal: closes the channel, frees its GPADLs and tells
  // the guest (RESCIND_CHANNELOFFER); the relid is reused only after the
  // guest's RELID_RELEASED.
  absl::Status Rescind(uint32_t relid);

  // SynicGuestCalls.
  HvStatus OnPostMessage(uint32_t vp, uint32_t connection_id,
                         uint32_t message_type,
                         std::span<const uint8_t> payload) override;
  HvStatus OnSignalEvent(uint32_t vp, uint32_t connection_id,
                         uint16_t flag_number) override;

  // One channel message from the guest; the error says why it was dropped.
  absl::Status HandleMessage(std::span<const uint8_t> payload);

  // ---- Save and restore (issue 14; server_state.cc, saved_state.proto).
  // Call with every VP held. QuiesceVsps calls each VSP's Quiesce (relid
  // order); on an error it unquiesces those it quiesced and returns it,
  // naming the VSP. SaveState takes the connection, GPADLs (pending ones
  // too), every channel (ring GPADL, downstream offset, target VP, user
  // data, host ring indices) and each VSP's own SaveState. UnquiesceVsps
  // lets them go on (a checkpoint, or a save that failed).
  absl::Status QuiesceVsps(absl::Time deadline);
  absl::StatusOr<hvstack::saved::VmbusServerState> SaveState();
  void UnquiesceVsps();
  // Into a server whose VSPs were registered (AddVsp) as for a boot, before
  // any VP runs: the connection and GPADLs come back, then every channel
  // whose relid is registered with the same offer (interface, instance,
  // sub-channel index) gets its record and rings back and its VSP's
  // RestoreState; VSPs may AddVsp more channels from there (sub-channels),
  // which are restored in turn, with no new offer sent. A saved channel
  // nobody registered, or a registered one the saved VM did not have, is a
  // FailedPrecondition naming it (the device configuration changed).
  absl::Status RestoreState(const hvstack::saved::VmbusServerState& state);
  static constexpr uint32_t kStateVersion = 1;

  // Observers, for the worker's status and for tests.
  bool connected() const;
  uint32_t version() const;  // 0 while disconnected
  bool channel_open(uint32_t relid) const;
  // The guest was sent the channel's offer (it asked for offers).
  bool channel_offered(uint32_t relid) const;
  size_t gpadl_count() const;
  uint64_t dropped_messages() const;

 private:
  enum class ChannelState { kOffered, kOpen, kRescinded };
  struct ChannelRecord {
    Vsp* vsp = nullptr;
    ChannelState state = ChannelState::kOffered;
    bool offered_to_guest = false;
    uint32_t connection_id = 0;
    uint32_t ring_gpadl = 0;
    // From the OPENCHANNEL that opened it (for a save).
    uint32_t downstream_offset = 0;
    std::array<uint8_t, 120> user_data{};
    std::shared_ptr<LiveChannel> open;
  };
  struct GpadlRecord {
    Gpadl gpadl;
    bool in_use = false;       // a ring of an open channel
    bool lent_to_vsp = false;  // the channel's VSP mapped it (MapGpadl)
  };

  absl::Status OnInitiateContact(const InitiateContact& m)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OnRequestOffers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OnGpadlHeader(const GpadlHeaderMessage& m)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OnGpadlBody(const GpadlBodyMessage& m)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status FinishGpadl(const GpadlAssembler& assembler)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OnGpadlTeardown(const GpadlTeardown& m)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OnOpenChannel(const vmbus::OpenChannel& m)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpenRings(const vmbus::OpenChannel& m, ChannelRecord& channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OnCloseChannel(const CloseChannel& m)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OnRelidReleased(const RelidReleased& m)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OnUnload() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OnModifyChannel(const ModifyChannel& m)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void CloseChannel(uint32_t relid, ChannelRecord& channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // LiveChannel::MapGpadl of channel `relid` (takes the lock).
  absl::StatusOr<MappedGpadl> MapGpadl(uint32_t relid, uint32_t handle);
  void SendOffer(uint32_t relid, ChannelRecord& channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  template <typename T>
  void Post(const T& message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    PostBytes(MessageBytes(message));
  }
  void PostBytes(std::vector<uint8_t> bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendGpadlCreated(uint32_t relid, uint32_t handle, uint32_t status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RequireConnected(uint32_t type) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // What the guest makes us log is bounded: a hostile guest decides how often
  // these happen.
  base::LogRateLimiter post_failures_log_{"failed VMBus message posts"};
  base::LogRateLimiter dropped_messages_log_{"dropped VMBus channel messages"};
  base::LogRateLimiter broken_channels_log_{"broken VMBus channels"};

  GuestPages& memory_;
  SynicPort& synic_;
  const Options options_;

  mutable absl::Mutex mu_;
  uint32_t version_ ABSL_GUARDED_BY(mu_) = 0;  // 0: disconnected
  uint32_t message_vp_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t message_sint_ ABSL_GUARDED_BY(mu_) = kVmbusMessageSint;
  uint8_t* win7_interrupt_page_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t win7_interrupt_page_gpa_ ABSL_GUARDED_BY(mu_) = 0;
  // RestoreState in progress: AddVsp sends no offer (the guest has them).
  bool restoring_ ABSL_GUARDED_BY(mu_) = false;
  bool offers_requested_ ABSL_GUARDED_BY(mu_) = false;
  std::map<uint32_t, ChannelRecord> channels_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, uint32_t> relid_by_connection_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, GpadlRecord> gpadls_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, GpadlAssembler> pending_gpadls_
      ABSL_GUARDED_BY(mu_);
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace vmbus

#endif  // HVSTACK_VMWP_VMBUS_SERVER_H_
