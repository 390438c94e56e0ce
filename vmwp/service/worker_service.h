#ifndef HVSTACK_VMWP_SERVICE_WORKER_SERVICE_H_
#define HVSTACK_VMWP_SERVICE_WORKER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/hvstack/internal/worker.grpc.pb.h"
#include "vmwp/console/console_ring.h"
#include "vmwp/service/worker_events.h"

namespace vmwp {

// The worker's side of the vmms <-> vmwp protocol
// (proto/hvstack/internal/worker.proto). It reads the console ring and the
// event log, and forwards Stop and console input through hooks; the worker
// owns the VM.
class WorkerServiceImpl final
    : public hvstack::internal::WorkerService::Service {
 public:
  struct Hooks {
    // Asks the VM to stop (vid::Partition::RequestStop). Must not block on the
    // VM.
    std::function<void()> stop;
    // Whether the VM's VPs are running.
    std::function<bool()> running;
    // Hands console input to the guest (the UART's receive queue); returns how
    // many bytes were accepted, the rest are dropped. Must not block.
    std::function<size_t(std::string_view bytes)> console_input;
    // For GetStatus.
    std::function<uint64_t()> console_input_dropped;
    // Enlightened VMs (vmwp/vmbus_host.h); unset: FailedPrecondition / an
    // empty integration status. Each may wait for the guest's answer.
    std::function<hvstack::internal::GuestIntegration()> integration;
    std::function<absl::Status(bool reboot, const std::string& reason)>
        shutdown_guest;
    std::function<absl::StatusOr<std::string>(uint32_t pool,
                                              const std::string& key)>
        kvp_get;
    std::function<absl::Status(uint32_t pool, const std::string& key,
                               const std::string& value)>
        kvp_set;
    std::function<absl::StatusOr<std::map<std::string, std::string>>(
        uint32_t pool)>
        kvp_list;
    // Pause / Resume the VM's VPs (vid::Partition::Pause / Resume). Missing:
    // UNIMPLEMENTED.
    std::function<absl::Status()> pause;
    std::function<absl::Status()> resume;
    std::function<bool()> paused;
    // For GetStatus: per-VP CPU time and exits of the current boot.
    std::function<std::vector<hvstack::internal::VpRuntime>()> vp_stats;
    // Network adapters: their counters for GetStatus, and SetNicLink.
    // Unset: no adapters / FAILED_PRECONDITION.
    std::function<std::vector<hvstack::internal::WorkerNicStatus>()> nic_status;
    std::function<absl::Status(uint32_t index, bool connected)> set_nic_link;
    // The guest's crash reports (vmwp/guest_crash.h): the action for the
    // next one (missing: UNIMPLEMENTED), and the last one, for GetStatus.
    std::function<void(hvstack::internal::GuestCrashAction)>
        set_guest_crash_action;
    std::function<std::optional<hvstack::internal::GuestCrashReport>()>
        last_guest_crash;
    // Issue 14: WorkerService.SaveState (missing: UNIMPLEMENTED), and what
    // GetStatus says of a restore (fills WorkerStatus.restored/restore_us).
    std::function<absl::StatusOr<hvstack::internal::SaveStateResponse>(
        const hvstack::internal::SaveStateRequest&)>
        save_state;
    std::function<void(hvstack::internal::WorkerStatus&)> restore_status;
  };

  // How long a following stream waits before re-checking for cancellation.
  static constexpr absl::Duration kFollowPollInterval = absl::Milliseconds(200);
  static constexpr size_t kMaxChunkBytes = 64 * 1024;

  // `events` may be null (WatchEvents then ends at once).
  WorkerServiceImpl(std::string vm_uuid, ConsoleRing* ring, Hooks hooks,
                    const WorkerEventLog* events = nullptr);

  grpc::Status GetStatus(grpc::ServerContext* context,
                         const hvstack::internal::GetStatusRequest* request,
                         hvstack::internal::WorkerStatus* response) override;
  grpc::Status Stop(grpc::ServerContext* context,
                    const hvstack::internal::StopRequest* request,
                    hvstack::internal::StopResponse* response) override;
  grpc::Status Pause(grpc::ServerContext* context,
                     const hvstack::internal::PauseRequest* request,
                     hvstack::internal::PauseResponse* response) override;
  grpc::Status Resume(grpc::ServerContext* context,
                      const hvstack::internal::ResumeRequest* request,
                      hvstack::internal::ResumeResponse* response) override;
  grpc::Status SaveState(
      grpc::ServerContext* context,
      const hvstack::internal::SaveStateRequest* request,
      hvstack::internal::SaveStateResponse* response) override;
  grpc::Status ShutdownGuest(
      grpc::ServerContext* context,
      const hvstack::internal::ShutdownGuestRequest* request,
      hvstack::internal::ShutdownGuestResponse* response) override;
  // The ring's retained output; with follow, then new output until the VM ends
  // (the ring is closed) or the client goes away.
  grpc::Status StreamConsole(
      grpc::ServerContext* context,
      const hvstack::internal::ConsoleRequest* request,
      grpc::ServerWriter<hvstack::internal::ConsoleData>* writer) override;

  // Console input: each message's bytes go to hooks.console_input in order.
  grpc::Status WriteConsole(
      grpc::ServerContext* context,
      grpc::ServerReader<hvstack::internal::ConsoleInput>* reader,
      hvstack::internal::ConsoleInputSummary* response) override;
  // Retained events after the requested sequence, then new ones until the log
  // is closed or the client goes away.
  grpc::Status WatchEvents(
      grpc::ServerContext* context,
      const hvstack::internal::WatchEventsRequest* request,
      grpc::ServerWriter<hvstack::internal::WorkerEvent>* writer) override;

  grpc::Status GetKvp(grpc::ServerContext* context,
                      const hvstack::internal::KvpGetRequest* request,
                      hvstack::internal::KvpGetResponse* response) override;
  grpc::Status SetKvp(grpc::ServerContext* context,
                      const hvstack::internal::KvpSetRequest* request,
                      hvstack::internal::KvpSetResponse* response) override;
  grpc::Status SetNicLink(grpc::ServerContext* context,
                          const hvstack::internal::SetNicLinkRequest* request,
                          hvstack::internal::SetNicLinkResponse*) override;
  grpc::Status ListKvp(grpc::ServerContext* context,
                       const hvstack::internal::KvpListRequest* request,
                       hvstack::internal::KvpListResponse* response) override;
  grpc::Status SetGuestCrashAction(
      grpc::ServerContext* context,
      const hvstack::internal::SetGuestCrashActionRequest* request,
      hvstack::internal::SetGuestCrashActionResponse* response) override;

  // Waits until no StreamConsole or WatchEvents call is running (they end
  // once the ring and the event log are closed), at most `timeout`. Returns
  // whether they all ended.
  bool WaitForStreamsToEnd(absl::Duration timeout);
  // Cancels every WriteConsole call: console input has nowhere to go once the
  // VM is gone, and only the client would otherwise end such a call.
  //
  // The worker's exit order is: close the ring and the event log,
  // WaitForStreamsToEnd, EndInputStreams, then Shutdown with a grace
  // deadline. The grace matters: a handler that has returned has not
  // necessarily sent its last messages, and Shutdown(now) would cancel them
  // (followers then lost the VM's last output, e.g. "powering off").
  void EndInputStreams();

 private:
  const std::string vm_uuid_;
  ConsoleRing* const ring_;
  const Hooks hooks_;
  const WorkerEventLog* const events_;
  absl::Mutex mu_;
  int active_streams_ ABSL_GUARDED_BY(mu_) = 0;
  // The running WriteConsole calls, for EndInputStreams.
  std::set<grpc::ServerContext*> input_calls_ ABSL_GUARDED_BY(mu_);
};

// Serves `service` on the unix socket `socket_path` (replacing a stale socket
// file there; the socket is made owner-only). InvalidArgument for a path too
// long for sun_path, Unavailable if the server cannot start.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartWorkerServer(
    const std::string& socket_path, grpc::Service* service);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_SERVICE_WORKER_SERVICE_H_
