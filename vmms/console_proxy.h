#ifndef HVSTACK_VMMS_CONSOLE_PROXY_H_
#define HVSTACK_VMMS_CONSOLE_PROXY_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "vmms/console_feed.h"

namespace vmms {

// Sends one chunk to the public client; false when the client went away.
using ChunkWriter = std::function<bool(const hvstack::v1::ConsoleChunk&)>;

// Relays a running worker's WorkerService.StreamConsole to a public client
// until the worker's stream ends, the client goes away or `stop` (may be
// null) is notified (the worker call is then cancelled). Returns the number
// of bytes relayed, or an error when the worker could not be reached before
// anything was sent (the caller then falls back to the retained log).
absl::StatusOr<size_t> ProxyWorkerConsole(const std::string& worker_socket,
                                          bool follow,
                                          grpc::ServerContext* context,
                                          const ChunkWriter& write,
                                          absl::Notification* stop = nullptr);

// Sends the retained console output (the last kRetainedConsoleBytes of the log
// file).
void SendRetainedConsole(const std::string& console_log,
                         const ChunkWriter& write);

// AttachConsole against a running worker: its console output (retained, then
// followed) goes to `stream`; the data of `first` and of every later request
// goes to the worker's WriteConsole. Ends as documented in vm.proto: with
// `ended` once the worker's console ends, or at once when the client closes
// its side. A worker that cannot be reached (it just exited) gets the
// retained log from `console_log` sent instead.
using AttachStream =
    grpc::ServerReaderWriter<hvstack::v1::ConsoleChunk,
                             hvstack::v1::AttachConsoleRequest>;
// The socket of the VM's next worker, given the generation of the one whose
// stream ended, once it is ready; nullopt when the VM no longer runs
// (WorkerManager::NextConsole). A guest reboot replaces the worker, and a
// following console carries on with the new one.
struct WorkerEndpoint {
  std::string socket;
  uint64_t generation = 0;
};
using NextWorker = std::function<std::optional<WorkerEndpoint>(uint64_t)>;

// Relays worker after worker (see NextWorker) while the VM runs; `follow`
// false relays the current worker's retained output only. Falls back to the
// retained log when no worker could be reached at all.
void FollowWorkerConsoles(const WorkerEndpoint& first, bool follow,
                          const std::string& console_log,
                          const NextWorker& next, grpc::ServerContext* context,
                          const ChunkWriter& write,
                          absl::Notification* stop = nullptr);

void AttachWorkerConsole(const WorkerEndpoint& worker,
                         const std::string& console_log,
                         const hvstack::v1::AttachConsoleRequest& first,
                         const NextWorker& next, grpc::ServerContext* context,
                         AttachStream* stream);

// The same for a console produced inside vmms (ConsoleFeed, the libvirt
// backend): its retained output, then what follows until the feed ends, the
// client goes away or `stop` is notified.
void FollowConsoleFeed(ConsoleFeed& feed, grpc::ServerContext* context,
                       const ChunkWriter& write,
                       absl::Notification* stop = nullptr);
void AttachConsoleFeed(ConsoleFeed& feed,
                       const hvstack::v1::AttachConsoleRequest& first,
                       grpc::ServerContext* context, AttachStream* stream);

inline constexpr size_t kRetainedConsoleBytes = 1 << 20;
// How long AttachConsole waits for the client to close its side after
// `ended`.
inline constexpr absl::Duration kAttachCloseGrace = absl::Seconds(5);

}  // namespace vmms

#endif  // HVSTACK_VMMS_CONSOLE_PROXY_H_
