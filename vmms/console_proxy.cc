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

void FollowWorkerConsoles(const WorkerEndpoint& first, bool follow,
                          const std::string& console_log,
                          const NextWorker& next, grpc::ServerContext* context,
                          const ChunkWriter& write, absl::Notification* stop) {
  bool write_failed = false;
  auto tracked_write = [&](const hvstack::v1::ConsoleChunk& chunk) {
    if (write(chunk)) return true;
    write_failed = true;
    return false;
  };
  auto stopped = [&] {
    return write_failed || context->IsCancelled() ||
           (stop != nullptr && stop->HasBeenNotified());
  };
  bool reached_any = false;
  WorkerEndpoint current = first;
  while (true) {
    absl::StatusOr<size_t> relayed = ProxyWorkerConsole(
        current.socket, follow, context, tracked_write, stop);
    if (relayed.ok()) {
      reached_any = true;
    } else {
      spdlog::info("{}", relayed.status().message());
    }
    if (!follow || stopped()) break;
    // The worker's console ended: the VM powered off, or a guest reboot
    // replaced the worker, whose successor's output follows.
    std::optional<WorkerEndpoint> successor = next(current.generation);
    if (!successor.has_value()) break;
    current = *successor;
  }
  if (!reached_any && !stopped()) {
    // No worker could be reached (it just exited): its log has everything it
    // wrote.
    SendRetainedConsole(console_log, tracked_write);
  }
}

void AttachWorkerConsole(const WorkerEndpoint& worker,
                         const std::string& console_log,
                         const hvstack::v1::AttachConsoleRequest& first,
                         const NextWorker& next, grpc::ServerContext* context,
                         AttachStream* stream) {
  // Input: the client's requests -> the current worker's WriteConsole, until
  // the client closes its side (or the call is cancelled). When the worker is
  // replaced (guest reboot), the input moves on to the next one.
  absl::Notification client_closed;
  std::thread input([&] {
    WorkerEndpoint target = worker;
    struct Connection {
      std::unique_ptr<hvstack::internal::WorkerService::Stub> stub;
      grpc::ClientContext context;
      hvstack::internal::ConsoleInputSummary summary;
      std::unique_ptr<grpc::ClientWriter<hvstack::internal::ConsoleInput>>
          writer;
    };
    auto connect = [](const std::string& socket) {
      auto c = std::make_unique<Connection>();
      c->stub = hvstack::internal::WorkerService::NewStub(grpc::CreateChannel(
          "unix:" + socket, grpc::InsecureChannelCredentials()));
      c->writer = c->stub->WriteConsole(&c->context, &c->summary);
      return c;
    };
    auto finish = [&](Connection& c) {
      c.writer->WritesDone();
      grpc::Status status = c.writer->Finish();
      if (status.ok() && c.summary.dropped() > 0) {
        spdlog::info("console input to {}: {} byte(s) accepted, {} dropped",
                     target.socket, c.summary.accepted(), c.summary.dropped());
      }
    };
    std::unique_ptr<Connection> connection = connect(target.socket);
    bool worker_ok = true;
    hvstack::internal::ConsoleInput data;
    auto forward = [&](const std::string& bytes) {
      if (bytes.empty() || !worker_ok) return;
      data.set_data(bytes);
      if (connection->writer->Write(data)) return;
      // The worker is gone; its successor (if the guest rebooted) gets the
      // bytes.
      finish(*connection);
      std::optional<WorkerEndpoint> successor = next(target.generation);
      if (!successor.has_value()) {
        worker_ok = false;
        return;
      }
      target = *successor;
      connection = connect(target.socket);
      worker_ok = connection->writer->Write(data);
    };
    forward(first.data());
    hvstack::v1::AttachConsoleRequest request;
    // Keep reading even when the worker is gone: the client's close is what
    // ends this thread.
    while (stream->Read(&request)) forward(request.data());
    client_closed.Notify();
    finish(*connection);
  });

  // Output: the VM's console, worker after worker -> the client, until the VM
  // ends or the client closed its side (a detach).
  std::atomic<bool> write_failed{false};
  auto write = [&](const hvstack::v1::ConsoleChunk& chunk) {
    if (stream->Write(chunk)) return true;
    write_failed = true;
    return false;
  };
  FollowWorkerConsoles(worker, /*follow=*/true, console_log, next, context,
                       write, &client_closed);
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

void FollowConsoleFeed(ConsoleFeed& feed, grpc::ServerContext* context,
                       const ChunkWriter& write, absl::Notification* stop) {
  uint64_t position = 0;
  std::string data;
  hvstack::v1::ConsoleChunk chunk;
  while (!context->IsCancelled() &&
         (stop == nullptr || !stop->HasBeenNotified())) {
    if (!feed.Read(&position, &data, absl::Milliseconds(100))) break;
    if (data.empty()) continue;
    chunk.set_data(data);
    if (!write(chunk)) break;
  }
}

void AttachConsoleFeed(ConsoleFeed& feed,
                       const hvstack::v1::AttachConsoleRequest& first,
                       grpc::ServerContext* context, AttachStream* stream) {
  absl::Notification client_closed;
  std::thread input([&] {
    auto forward = [&](const std::string& bytes) {
      if (bytes.empty()) return;
      if (absl::Status s = feed.Write(bytes); !s.ok()) {
        spdlog::info("console input: {}", std::string(s.message()));
      }
    };
    forward(first.data());
    hvstack::v1::AttachConsoleRequest request;
    while (stream->Read(&request)) forward(request.data());
    client_closed.Notify();
  });
  std::atomic<bool> write_failed{false};
  FollowConsoleFeed(
      feed, context,
      [&](const hvstack::v1::ConsoleChunk& chunk) {
        if (stream->Write(chunk)) return true;
        write_failed = true;
        return false;
      },
      &client_closed);
  if (!client_closed.HasBeenNotified() && !write_failed) {
    hvstack::v1::ConsoleChunk ended;
    ended.set_ended(true);
    stream->Write(ended);
    if (!client_closed.WaitForNotificationWithTimeout(kAttachCloseGrace))
      context->TryCancel();
  } else if (write_failed) {
    context->TryCancel();
  }
  input.join();
}

}  // namespace vmms
