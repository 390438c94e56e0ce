#ifndef HVSTACK_VMWP_VMBUS_HOST_H_
#define HVSTACK_VMWP_VMBUS_HOST_H_

// The enlightened half of a VM: the VMBus server on the partition's SynIC and
// the four integration components (heartbeat, shutdown, time sync, KVP), with
// the heartbeat's timer thread. One per boot, created after the partition
// (which must be enlightened) and destroyed before it; the worker's service
// reaches it through IntegrationControl.

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "vid/partition.h"
#include "vmwp/network_config.h"
#include "vmwp/storage_config.h"
#include "vmwp/vmbus/hvcore_bridge.h"
#include "vmwp/vmbus/saved_state.pb.h"
#include "vmwp/vmbus/server.h"
#include "vmwp/vmbus/vid_guest_pages.h"
#include "vmwp/vsp/ic/ic_services.h"

namespace vmwp {

// Why KVP calls fail while the guest's KVP service has not negotiated: the
// guest never opened the channel, or opened it and does not answer (Linux's
// hv_utils opens it in the kernel and negotiates only once hv_kvp_daemon
// runs).
std::string KvpUnavailable(bool channel_open);

class VmbusHost {
 public:
  struct Options {
    absl::Duration heartbeat_interval = absl::Seconds(1);
    absl::Duration heartbeat_lost_after = absl::Seconds(5);
    // Run first on the heartbeat timer thread (the sandbox installs its
    // device-thread seccomp filter here). May be empty. On an error the
    // thread logs it and ends: no heartbeats rather than an unconfined
    // thread.
    std::function<absl::Status()> on_thread_start;
    // Told (on the timer thread) when the heartbeat changes: the guest's first
    // answer, OK -> LOST, LOST -> OK. Not while paused, nor in the first
    // `heartbeat_lost_after` after a resume (the guest had no chance to
    // answer). May be empty.
    std::function<void(hvstack::internal::GuestIntegration::Heartbeat state,
                       uint64_t sequence)>
        on_heartbeat_change;
    // The VM's disks: storvsp SCSI controllers (descriptors owned from
    // Create on, closed on failure too).
    google::protobuf::RepeatedPtrField<hvstack::internal::WorkerDisk> disks;
    // The VM's network adapters: netvsp on TAP descriptors (owned from
    // Create on, closed on failure too); `vm_uuid` makes their instance
    // GUIDs stable across boots.
    google::protobuf::RepeatedPtrField<hvstack::internal::WorkerNic> nics;
    std::string vm_uuid;
  };

  // How long ShutdownGuest and the KVP calls wait for the guest's answer.
  static constexpr absl::Duration kGuestAnswerTimeout = absl::Seconds(10);

  // FailedPrecondition if `partition` is not enlightened. Registers the
  // VMBus ports and channels; the heartbeat timer starts with StartTimer().
  static absl::StatusOr<std::unique_ptr<VmbusHost>> Create(
      vid::Partition& partition, Options options);
  ~VmbusHost();
  VmbusHost(const VmbusHost&) = delete;
  VmbusHost& operator=(const VmbusHost&) = delete;

  // Starts the heartbeat timer thread, the storage threads and each network
  // adapter's device thread (once; after the sandbox's process lock-down,
  // since each thread installs a filter of its own).
  void StartTimer();
  // Stops the timer thread, completes in-flight disk I/O, stops the network
  // adapters (the guest is told their link went down) and makes every
  // waiting or later call return Unavailable at once. Call once the VPs have
  // stopped (nothing will answer any more); idempotent.
  void Close();

  // The storvsp controllers, in controller-number order (tests, status).
  const StorageControllers& storage() const { return storage_; }
  // The netvsp adapters, in WorkerConfig.nics order.
  std::vector<hvstack::internal::WorkerNicStatus> NicStatus() const;
  // Connects or disconnects adapter `index` (WorkerNic.index) as the guest
  // sees it. NotFound for an index the VM does not have.
  absl::Status SetNicLink(uint32_t index, bool connected);

  hvstack::internal::GuestIntegration Status() const;

  // The shutdown IC: see WorkerService.ShutdownGuest for the contract.
  absl::Status ShutdownGuest(bool reboot, const std::string& reason);
  // KVP; `pool` is hv_kvp's pool number (0-4).
  absl::StatusOr<std::string> GetKvp(uint32_t pool, const std::string& key);
  absl::Status SetKvp(uint32_t pool, const std::string& key,
                      const std::string& value);
  absl::StatusOr<std::map<std::string, std::string>> ListKvp(uint32_t pool);

  // ---- Save and restore (issue 14), with every VP held.
  // Stops the timer's sends (as OnPause; a tick in progress is waited for),
  // then quiesces every VSP (storvsp completes in-flight disk I/O). On an
  // error the timer goes on and the error names the VSP.
  absl::Status Quiesce(absl::Time deadline);
  absl::StatusOr<hvstack::saved::VmbusServerState> SaveState();
  // The VM goes on in this worker: the VSPs continue, heartbeats resume, and
  // the guest gets a SYNC time sample (as after OnResume).
  void Unquiesce();
  // Into a freshly created host, before any VP runs: the server's and every
  // VSP's state (vmbus::VmbusServer::RestoreState), then a SYNC time sample
  // for the guest's first instruction; the heartbeat is not judged LOST for
  // heartbeat_lost_after.
  absl::Status RestoreState(const hvstack::saved::VmbusServerState& state);

  // The VM is paused: no heartbeats are sent or judged until OnResume.
  void OnPause();
  // A time sample with SYNC (after the VM was paused: the guest's clock
  // stood still); heartbeats resume.
  void OnResume();

 private:
  explicit VmbusHost(vid::Partition& partition, Options options);
  absl::Status Start();
  void TimerLoop();
  // Polls `done` until it is true, the guest's answer timeout passes, or
  // Close(); false on timeout or close.
  bool WaitFor(const std::function<bool()>& done);
  absl::Status CheckKvp(uint32_t pool) const;
  // OnResume without the time sample.
  void OnResumeQuietly();

  vid::Partition& partition_;
  hvcore::hyperv::HvPartition& hv_;
  const Options options_;
  vmbus::VidGuestPages pages_;
  vmbus::HvPartitionSynicPort synic_port_;
  // The VSPs outlive the server (it calls OnClose while closing channels).
  vsp::ic::HeartbeatIc heartbeat_;
  vsp::ic::ShutdownIc shutdown_;
  vsp::ic::TimeSyncIc timesync_;
  vsp::ic::KvpIc kvp_;
  StorageControllers storage_;
  std::vector<std::unique_ptr<vsp::net::NetAdapter>> nics_;
  vmbus::VmbusServer server_;
  // The ICs' relids, in Status()'s order (heartbeat, shutdown, timesync, kvp).
  std::array<uint32_t, 4> ic_relids_{};

  absl::Notification closed_;
  absl::Mutex pause_mu_;
  bool paused_ ABSL_GUARDED_BY(pause_mu_) = false;
  absl::Time quiet_until_ ABSL_GUARDED_BY(pause_mu_) = absl::InfinitePast();
  // Timer thread only.
  vsp::ic::HeartbeatStatus reported_ = vsp::ic::HeartbeatStatus::kNoContact;
  std::thread timer_;
  // One shutdown or KVP exchange at a time (the IC protocols allow one
  // outstanding request).
  absl::Mutex call_mu_;
};

// The service's way to the current boot's VmbusHost: calls fail with
// FailedPrecondition while there is none (unenlightened VM, between boots),
// and Detach() waits for calls in progress, so the host can be destroyed.
class IntegrationControl {
 public:
  void Attach(VmbusHost* host);
  // Closes the host (waking waiting calls), then waits for them to return.
  void Detach();
  // Runs `fn` on the current host, or returns FailedPrecondition naming
  // `what` ("guest offers no shutdown channel" style) if there is none.
  absl::Status With(const std::function<absl::Status(VmbusHost&)>& fn);
  hvstack::internal::GuestIntegration Status();
  void OnPause();
  void OnResume();

 private:
  absl::Mutex mu_;
  VmbusHost* host_ ABSL_GUARDED_BY(mu_) = nullptr;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace vmwp

#endif  // HVSTACK_VMWP_VMBUS_HOST_H_
