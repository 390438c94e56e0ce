#include "vmms/console_proxy.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "proto/hvstack/internal/worker.grpc.pb.h"
#include "vmms/log_format.h"
#include "vmms/worker_files.h"

namespace vmms {

absl::StatusOr<size_t> ProxyWorkerConsole(const std::string& worker_socket,
                                          bool follow,
                                          grpc::ServerContext* context,
                                          const ChunkWriter& write,
                                          absl::Notification* stop) {
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
      if (context->IsCancelled() ||
          (stop != nullptr && stop->HasBeenNotified())) {
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
    if (!write(chunk)) {
      worker_context.TryCancel();
      break;
    }
    relayed += data.data().size();
  }
  grpc::Status status = reader->Finish();
  done.Notify();
  watcher.join();
  if (!status.ok() && relayed == 0 && !context->IsCancelled() &&
      (stop == nullptr || !stop->HasBeenNotified())) {
    return absl::UnavailableError(absl::StrCat(
        "worker console at ", worker_socket, ": ", status.error_message()));
  }
  return relayed;
}

void SendRetainedConsole(const std::string& console_log,
                         const ChunkWriter& write) {
  std::string retained = ReadConsoleTail(console_log, kRetainedConsoleBytes);
  constexpr size_t kChunk = 64 * 1024;
  hvstack::v1::ConsoleChunk chunk;
  for (size_t offset = 0; offset < retained.size(); offset += kChunk) {
    chunk.set_data(
        retained.substr(offset, std::min(kChunk, retained.size() - offset)));
    if (!write(chunk)) return;
  }
}

void AttachWorkerConsole(const std::string& worker_socket,
                         const std::string& console_log,
                         const hvstack::v1::AttachConsoleRequest& first,
                         grpc::ServerContext* context, AttachStream* stream) {
  auto channel = grpc::CreateChannel("unix:" + worker_socket,
                                     grpc::InsecureChannelCredentials());
  auto stub = hvstack::internal::WorkerService::NewStub(channel);

  // Input: the client's requests -> the worker's WriteConsole, until the
  // client closes its side (or the call is cancelled).
  absl::Notification client_closed;
  std::thread input([&] {
    grpc::ClientContext worker_context;
    hvstack::internal::ConsoleInputSummary summary;
    auto writer = stub->WriteConsole(&worker_context, &summary);
    hvstack::internal::ConsoleInput data;
    bool worker_ok = true;
    auto forward = [&](const std::string& bytes) {
      if (bytes.empty() || !worker_ok) return;
      data.set_data(bytes);
      worker_ok = writer->Write(data);
    };
    forward(first.data());
    hvstack::v1::AttachConsoleRequest request;
    // Keep reading even when the worker is gone: the client's close is what
    // ends this thread.
    while (stream->Read(&request)) forward(request.data());
    client_closed.Notify();
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    if (status.ok() && summary.dropped() > 0) {
      spdlog::info("console input to {}: {} byte(s) accepted, {} dropped",
                   worker_socket, summary.accepted(), summary.dropped());
    }
  });

  // Output: the worker's console -> the client, until it ends or the client
  // closed its side (a detach).
  std::atomic<bool> write_failed{false};
  auto write = [&](const hvstack::v1::ConsoleChunk& chunk) {
    if (stream->Write(chunk)) return true;
    write_failed = true;
    return false;
  };
  absl::StatusOr<size_t> relayed = ProxyWorkerConsole(
      worker_socket, /*follow=*/true, context, write, &client_closed);
  if (!relayed.ok()) {
    // The worker went away between the lookup and the call: its log has
    // everything it wrote.
    spdlog::info("{}; sending the retained log", relayed.status().message());
    SendRetainedConsole(console_log, write);
  }
  if (!client_closed.HasBeenNotified() && !write_failed) {
    hvstack::v1::ConsoleChunk ended;
    ended.set_ended(true);
    stream->Write(ended);
    if (!client_closed.WaitForNotificationWithTimeout(kAttachCloseGrace))
      context->TryCancel();  // Unblocks the input thread's Read.
  } else if (write_failed) {
    context->TryCancel();
  }
  input.join();
}

}  // namespace vmms
