#ifndef HVSTACK_VMMS_CONSOLE_PROXY_H_
#define HVSTACK_VMMS_CONSOLE_PROXY_H_

#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/status/statusor.h"
#include "proto/hvstack/v1/vm.pb.h"

namespace vmms {

// Relays a running worker's WorkerService.StreamConsole to a public
// StreamConsole client until the worker's stream ends or the client goes away
// (the worker call is then cancelled). Returns the number of bytes relayed, or
// an error when the worker could not be reached before anything was sent (the
// caller then falls back to the retained log).
absl::StatusOr<size_t> ProxyWorkerConsole(
    const std::string& worker_socket, bool follow, grpc::ServerContext* context,
    grpc::ServerWriter<hvstack::v1::ConsoleChunk>* writer);

// Sends the retained console output (the last kRetainedConsoleBytes of the log
// file).
void SendRetainedConsole(const std::string& console_log,
                         grpc::ServerWriter<hvstack::v1::ConsoleChunk>* writer);

inline constexpr size_t kRetainedConsoleBytes = 1 << 20;

}  // namespace vmms

#endif  // HVSTACK_VMMS_CONSOLE_PROXY_H_
