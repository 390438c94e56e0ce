#ifndef HVSTACK_VMWP_VSP_STORAGE_STORVSP_H_
#define HVSTACK_VMWP_VSP_STORAGE_STORVSP_H_

// storvsp: one synthetic SCSI controller on VMBus, as Linux's hv_storvsc
// drives it. The primary channel carries the vstor initialization
// (BEGIN_INITIALIZATION, QUERY_PROTOCOL_VERSION, QUERY_PROPERTIES,
// END_INITIALIZATION); every channel (primary and the sub-channels the guest
// asks for with CREATE_SUB_CHANNELS) carries EXECUTE_SRB. An SRB addresses a
// LUN (path 0, target, lun); its CDB is answered by ScsiDisk, and block I/O
// goes to the LUN's BlockBackend without blocking the VP thread that drained
// the request: the completion packet is sent from whichever thread the I/O
// completes on. Everything the guest sends is checked: malformed or
// out-of-order packets get error statuses, a buffer outside guest RAM or
// larger than the negotiated maximum an SRB error, and nothing the guest
// does can make the worker hold unbounded state.

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/log_rate_limiter.h"
#include "vmwp/vmbus/guest_pages.h"
#include "vmwp/vmbus/vsp.h"
#include "vmwp/vsp/storage/block_backend.h"
#include "vmwp/vsp/storage/scsi_disk.h"
#include "vmwp/vsp/storage/vstor_protocol.h"

namespace vsp::storage {

struct StorageStats {
  uint64_t packets = 0;
  uint64_t srbs = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t flushes = 0;
  uint64_t unmaps = 0;
  uint64_t check_conditions = 0;
  uint64_t invalid_requests = 0;  // SRB errors: bad buffer, size, LUN ...
  uint64_t io_errors = 0;
  uint64_t bad_packets = 0;  // malformed / out-of-order vstor packets
  uint64_t busy = 0;         // SRBs refused while too many were in flight
  uint64_t dropped_completions = 0;
};

class StorageController {
 public:
  struct Lun {
    uint8_t target = 0;
    uint8_t lun = 0;
    std::unique_ptr<BlockBackend> backend;
    // block_count, read_only and the unmap flags are taken from the backend.
    DiskProperties properties;
  };

  struct Options {
    vmbus::Guid instance;
    uint32_t vp_count = 1;
    uint32_t max_transfer_bytes = 1u << 20;
    // Registers another channel of this controller with the VMBus server
    // (the sub-channels the guest asks for) and returns its relid; empty:
    // no sub-channels are offered.
    std::function<absl::StatusOr<uint32_t>(vmbus::Vsp*)> add_channel;
    // At most this many sub-channels (and at most vp_count - 1).
    uint32_t max_sub_channels = 16;
    // SRBs in flight per channel before new ones get BUSY.
    uint32_t max_in_flight = 1024;
    // Completions waiting for room in a guest ring that does not drain,
    // per channel, before they are dropped.
    uint32_t max_queued_completions = 1024;
  };

  // (target, lun) pairs must be unique, target < 2 and lun < 255 (what
  // Linux's storvsc scans).
  static absl::StatusOr<std::unique_ptr<StorageController>> Create(
      vmbus::GuestPages& memory, Options options, std::vector<Lun> luns);
  // Stops the backends (in-flight I/O completes first).
  ~StorageController();
  StorageController(const StorageController&) = delete;
  StorageController& operator=(const StorageController&) = delete;

  // The primary channel's VSP: register it with the VMBus server.
  vmbus::Vsp* primary();
  // Starts the backends' completion threads (after the sandbox lock-down).
  absl::Status Start(const std::function<absl::Status()>& on_thread_start);
  // Waits for in-flight I/O and stops the backends; idempotent.
  void Stop();

  StorageStats stats() const;
  // The guest finished initialization (END_INITIALIZATION).
  bool ready() const;
  uint16_t protocol_version() const;
  // Sub-channels offered so far.
  uint32_t sub_channels() const;

 private:
  class Channel;
  // An SRB in a backend (storvsp.cc); channels keep them for reuse.
  struct SrbIo;
  struct LunState {
    uint8_t target;
    uint8_t lun;
    std::unique_ptr<BlockBackend> backend;
    ScsiDisk disk;
  };
  enum class InitState { kNone, kBegun, kVersioned, kReady };

  StorageController(vmbus::GuestPages& memory, Options options);
  void OnPacket(Channel& channel, const vmbus::Packet& packet);
  void ResetInitialization();
  void SetState(InitState state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleControl(Channel& channel, uint64_t trans_id, VstorPacket& p);
  void HandleSrb(Channel& channel, const vmbus::Packet& packet, VstorPacket& p);
  void CreateSubChannels(Channel& channel, uint64_t trans_id, VstorPacket& p);
  // The control thread: offers the sub-channels the guest asked for. Offers
  // go through the VMBus server's lock, which a drain (holding its ring's
  // lock) must not take: CLOSECHANNEL takes them in the other order.
  void ControlLoop();
  uint32_t SubChannelLimit() const;
  // Completes an SRB at once with an SRB status (no sense).
  void FailSrb(Channel& channel, uint64_t trans_id, VstorPacket& p,
               uint8_t srb_status, uint8_t scsi_status = kScsiGood);
  void ReplySrb(Channel& channel, uint64_t trans_id, VstorPacket& p,
                const ScsiReply& reply, std::span<const iovec> buffer);
  // The backend finished `io`'s I/O with `result`: completes the SRB.
  void FinishSrb(SrbIo* io, int64_t result);
  LunState* FindLun(uint8_t target, uint8_t lun);
  std::vector<uint8_t> LunsOfTarget(uint8_t target) const;
  bool HasTarget(uint8_t target) const;
  void Count(uint64_t StorageStats::*field, uint64_t n = 1);
  // Save and restore (issue 14; storvsp_state.cc, saved_state.proto), per
  // channel (each is a Vsp): Quiesce waits until the channel has no SRB in
  // flight in a backend (completions are then sent or queued); the state is
  // the queued completions, plus the controller's initialization and
  // sub-channels on the primary, which re-registers the sub-channels when
  // restored (the VMBus server then restores them in turn).
  absl::Status QuiesceChannel(Channel& channel, absl::Time deadline);
  absl::StatusOr<std::string> SaveChannel(Channel& channel);
  absl::Status RestoreChannel(Channel& channel,
                              std::shared_ptr<vmbus::ChannelEndpoint> endpoint,
                              std::string_view state);
  void NoteBadPacket(const absl::Status& why);

  vmbus::GuestPages& memory_;
  const Options options_;
  std::vector<std::unique_ptr<LunState>> luns_;
  // Channel 0 is the primary; sub-channels follow in creation order. Only
  // grows (under mu_); entries live as long as the controller.
  std::vector<std::unique_ptr<Channel>> channels_;
  Channel* primary_ = nullptr;

  mutable absl::Mutex mu_;
  InitState state_ ABSL_GUARDED_BY(mu_) = InitState::kNone;
  uint16_t version_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t offered_sub_channels_ ABSL_GUARDED_BY(mu_) = 0;
  // Counted with relaxed atomic adds (std::atomic_ref): every SRB counts,
  // and a lock per count cost more than the rest of an SRB's bookkeeping.
  alignas(8) mutable StorageStats stats_;
  // state_ == kReady, readable without mu_ (checked on every SRB).
  std::atomic<bool> ready_{false};
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  uint32_t wanted_sub_channels_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread control_;

  base::LogRateLimiter bad_packets_log_{"bad storvsc packets"};
  base::LogRateLimiter io_errors_log_{"disk I/O errors"};
  base::LogRateLimiter dropped_log_{"dropped storvsc completions"};
};

}  // namespace vsp::storage

#endif  // HVSTACK_VMWP_VSP_STORAGE_STORVSP_H_
