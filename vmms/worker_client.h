#ifndef HVSTACK_VMMS_WORKER_CLIENT_H_
#define HVSTACK_VMMS_WORKER_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/hvstack/internal/worker.grpc.pb.h"

namespace vmms {

// One unary call to a worker's WorkerService with a deadline: vmms never waits
// on a worker without one, so a hung worker cannot hold a client's request.
// The worker's status comes back as is (its code and message); a transport
// failure is UNAVAILABLE naming the socket.
absl::Status CallWorker(const std::string& socket_path, absl::Duration timeout,
                        const std::function<grpc::Status(
                            hvstack::internal::WorkerService::Stub& stub,
                            grpc::ClientContext* context)>& call);

// Calls that wait for the guest's answer (the shutdown IC, KVP): the worker
// gives the guest up to 10 s (VmbusHost::kGuestAnswerTimeout) and then says
// why; vmms waits a little longer so that the worker's reason, not a bare
// deadline, reaches the client.
inline constexpr absl::Duration kGuestAnswerRpcTimeout = absl::Seconds(12);

// GetStatus with `timeout`.
absl::StatusOr<hvstack::internal::WorkerStatus> QueryWorkerStatus(
    const std::string& socket_path, absl::Duration timeout);

}  // namespace vmms

#endif  // HVSTACK_VMMS_WORKER_CLIENT_H_
