#ifndef HVSTACK_VMWP_SERVICE_WORKER_SERVICE_H_
#define HVSTACK_VMWP_SERVICE_WORKER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/hvstack/internal/worker.grpc.pb.h"
#include "vmwp/console/console_ring.h"

namespace vmwp {

// The worker's side of the vmms <-> vmwp protocol
// (proto/hvstack/internal/worker.proto). It only reads the console ring and
// forwards Stop; the worker owns the VM.
class WorkerServiceImpl final
    : public hvstack::internal::WorkerService::Service {
 public:
  struct Hooks {
    // Asks the VM to stop (vid::Partition::RequestStop). Must not block on the
    // VM.
    std::function<void()> stop;
    // Whether the VM's VPs are running.
    std::function<bool()> running;
  };

  // How long a following stream waits before re-checking for cancellation.
  static constexpr absl::Duration kFollowPollInterval = absl::Milliseconds(200);
  static constexpr size_t kMaxChunkBytes = 64 * 1024;

  WorkerServiceImpl(std::string vm_uuid, ConsoleRing* ring, Hooks hooks);

  grpc::Status GetStatus(grpc::ServerContext* context,
                         const hvstack::internal::GetStatusRequest* request,
                         hvstack::internal::WorkerStatus* response) override;
  grpc::Status Stop(grpc::ServerContext* context,
                    const hvstack::internal::StopRequest* request,
                    hvstack::internal::StopResponse* response) override;
  // The ring's retained output; with follow, then new output until the VM ends
  // (the ring is closed) or the client goes away.
  grpc::Status StreamConsole(
      grpc::ServerContext* context,
      const hvstack::internal::ConsoleRequest* request,
      grpc::ServerWriter<hvstack::internal::ConsoleData>* writer) override;

  // Waits until no StreamConsole call is running (they end once the ring is
  // closed), at most `timeout`. Returns whether they all ended. The worker
  // calls this before Shutdown(now), so that followers get the VM's last output
  // and a clean end of stream without the server idling through a shutdown
  // grace period.
  bool WaitForStreamsToEnd(absl::Duration timeout);

 private:
  const std::string vm_uuid_;
  ConsoleRing* const ring_;
  const Hooks hooks_;
  absl::Mutex mu_;
  int active_streams_ ABSL_GUARDED_BY(mu_) = 0;
};

// Serves `service` on the unix socket `socket_path` (replacing a stale socket
// file there; the socket is made owner-only). InvalidArgument for a path too
// long for sun_path, Unavailable if the server cannot start.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartWorkerServer(
    const std::string& socket_path, grpc::Service* service);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_SERVICE_WORKER_SERVICE_H_
