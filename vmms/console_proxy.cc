#include "vmms/console_proxy.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "proto/hvstack/internal/worker.grpc.pb.h"
#include "vmms/log_format.h"
#include "vmms/worker_files.h"

namespace vmms {

absl::StatusOr<size_t> ProxyWorkerConsole(
    const std::string& worker_socket, bool follow, grpc::ServerContext* context,
    grpc::ServerWriter<hvstack::v1::ConsoleChunk>* writer) {
  auto channel = grpc::CreateChannel("unix:" + worker_socket,
                                     grpc::InsecureChannelCredentials());
  auto stub = hvstack::internal::WorkerService::NewStub(channel);
  grpc::ClientContext worker_context;
  hvstack::internal::ConsoleRequest request;
  request.set_follow(follow);
  auto reader = stub->StreamConsole(&worker_context, request);

  // The synchronous API blocks in Read(); a quiet guest would keep a departed
  // client's call (and its thread) alive forever. Watch for cancellation and
  // cancel the worker call in turn.
  absl::Notification done;
  std::thread watcher([&] {
    while (!done.WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
      if (context->IsCancelled()) {
        worker_context.TryCancel();
        return;
      }
    }
  });

  size_t relayed = 0;
  hvstack::internal::ConsoleData data;
  hvstack::v1::ConsoleChunk chunk;
  while (reader->Read(&data)) {
    chunk.set_data(data.data());
    if (!writer->Write(chunk)) {
      worker_context.TryCancel();
      break;
    }
    relayed += data.data().size();
  }
  grpc::Status status = reader->Finish();
  done.Notify();
  watcher.join();
  if (!status.ok() && relayed == 0 && !context->IsCancelled()) {
    return absl::UnavailableError(absl::StrCat(
        "worker console at ", worker_socket, ": ", status.error_message()));
  }
  return relayed;
}

void SendRetainedConsole(
    const std::string& console_log,
    grpc::ServerWriter<hvstack::v1::ConsoleChunk>* writer) {
  std::string retained = ReadConsoleTail(console_log, kRetainedConsoleBytes);
  constexpr size_t kChunk = 64 * 1024;
  hvstack::v1::ConsoleChunk chunk;
  for (size_t offset = 0; offset < retained.size(); offset += kChunk) {
    chunk.set_data(
        retained.substr(offset, std::min(kChunk, retained.size() - offset)));
    if (!writer->Write(chunk)) return;
  }
}

}  // namespace vmms
