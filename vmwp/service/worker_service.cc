#include "vmwp/service/worker_service.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace vmwp {

WorkerServiceImpl::WorkerServiceImpl(std::string vm_uuid, ConsoleRing* ring,
                                     Hooks hooks)
    : vm_uuid_(std::move(vm_uuid)), ring_(ring), hooks_(std::move(hooks)) {}

grpc::Status WorkerServiceImpl::GetStatus(
    grpc::ServerContext*, const hvstack::internal::GetStatusRequest*,
    hvstack::internal::WorkerStatus* response) {
  response->set_vm_uuid(vm_uuid_);
  response->set_running(hooks_.running ? hooks_.running() : false);
  response->set_console_bytes(ring_->end_offset());
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Stop(grpc::ServerContext*,
                                     const hvstack::internal::StopRequest*,
                                     hvstack::internal::StopResponse*) {
  if (hooks_.stop) hooks_.stop();
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::StreamConsole(
    grpc::ServerContext* context,
    const hvstack::internal::ConsoleRequest* request,
    grpc::ServerWriter<hvstack::internal::ConsoleData>* writer) {
  {
    absl::MutexLock lock(&mu_);
    ++active_streams_;
  }
  struct Done {
    WorkerServiceImpl* self;
    ~Done() {
      absl::MutexLock lock(&self->mu_);
      --self->active_streams_;
    }
  } done{this};
  uint64_t offset = ring_->start_offset();
  const uint64_t snapshot_end = ring_->end_offset();
  hvstack::internal::ConsoleData data;
  while (!context->IsCancelled()) {
    ConsoleRing::Chunk chunk;
    if (request->follow()) {
      chunk = ring_->WaitAndRead(offset, kMaxChunkBytes,
                                 absl::Now() + kFollowPollInterval);
    } else {
      if (offset >= snapshot_end) break;
      chunk = ring_->Read(
          offset, std::min<uint64_t>(kMaxChunkBytes, snapshot_end - offset));
    }
    offset = chunk.next_offset;
    if (!chunk.data.empty()) {
      data.set_data(std::move(chunk.data));
      if (!writer->Write(data)) break;  // The client went away.
    }
    if (chunk.closed) break;
    if (!request->follow() && chunk.next_offset == chunk.offset) break;
  }
  return grpc::Status::OK;
}

bool WorkerServiceImpl::WaitForStreamsToEnd(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto none = [](int* n) { return *n == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(+none, &active_streams_),
                              timeout);
}

absl::StatusOr<std::unique_ptr<grpc::Server>> StartWorkerServer(
    const std::string& socket_path, grpc::Service* service) {
  if (socket_path.empty() ||
      socket_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "worker socket path \"", socket_path, "\" is empty or longer than ",
        sizeof(sockaddr_un{}.sun_path) - 1, " bytes"));
  }
  // A socket left by an earlier worker of this VM would make bind fail.
  struct stat st;
  if (::lstat(socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "worker socket path ", socket_path, " exists and is not a socket"));
    }
    ::unlink(socket_path.c_str());
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket_path,
                           grpc::InsecureServerCredentials());
  builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve WorkerService on unix:", socket_path));
  }
  // Only vmms (the same user) may talk to the worker.
  if (::chmod(socket_path.c_str(), 0600) != 0) {
    server->Shutdown();
    return absl::ErrnoToStatus(errno, absl::StrCat("chmod ", socket_path));
  }
  return server;
}

}  // namespace vmwp
