#include "vmwp/service/worker_service.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace vmwp {

namespace {

// Counts a long-running call for WaitForStreamsToEnd.
class ActiveStream {
 public:
  ActiveStream(absl::Mutex* mu, int* count) : mu_(mu), count_(count) {
    absl::MutexLock lock(mu_);
    ++*count_;
  }
  ~ActiveStream() {
    absl::MutexLock lock(mu_);
    --*count_;
  }

 private:
  absl::Mutex* mu_;
  int* count_;
};

}  // namespace

WorkerServiceImpl::WorkerServiceImpl(std::string vm_uuid, ConsoleRing* ring,
                                     Hooks hooks, const WorkerEventLog* events)
    : vm_uuid_(std::move(vm_uuid)),
      ring_(ring),
      hooks_(std::move(hooks)),
      events_(events) {}

grpc::Status WorkerServiceImpl::GetStatus(
    grpc::ServerContext*, const hvstack::internal::GetStatusRequest*,
    hvstack::internal::WorkerStatus* response) {
  response->set_vm_uuid(vm_uuid_);
  response->set_running(hooks_.running ? hooks_.running() : false);
  response->set_console_bytes(ring_->end_offset());
  if (hooks_.console_input_dropped)
    response->set_console_input_dropped(hooks_.console_input_dropped());
  if (hooks_.paused) response->set_paused(hooks_.paused());
  if (hooks_.vp_stats) {
    for (hvstack::internal::VpRuntime& vp : hooks_.vp_stats())
      *response->add_vps() = std::move(vp);
  }
  timespec cpu{};
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu) == 0) {
    response->set_cpu_time_ns(uint64_t(cpu.tv_sec) * 1000000000 + cpu.tv_nsec);
  }
  if (hooks_.integration)
    *response->mutable_integration() = hooks_.integration();
  if (hooks_.nic_status) {
    for (hvstack::internal::WorkerNicStatus& nic : hooks_.nic_status())
      *response->add_nics() = std::move(nic);
  }
  if (hooks_.restore_status) hooks_.restore_status(*response);
  if (hooks_.last_guest_crash) {
    if (std::optional<hvstack::internal::GuestCrashReport> crash =
            hooks_.last_guest_crash()) {
      *response->mutable_last_guest_crash() = *std::move(crash);
    }
  }
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::SetGuestCrashAction(
    grpc::ServerContext*,
    const hvstack::internal::SetGuestCrashActionRequest* request,
    hvstack::internal::SetGuestCrashActionResponse*) {
  if (!hooks_.set_guest_crash_action) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        "this worker takes no guest crash action");
  }
  if (!hvstack::internal::GuestCrashAction_IsValid(request->action())) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("guest crash action ", request->action(),
                                     " is not a GuestCrashAction"));
  }
  hooks_.set_guest_crash_action(request->action());
  return grpc::Status::OK;
}

namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

const grpc::Status kNotEnlightened(
    grpc::StatusCode::FAILED_PRECONDITION,
    "the VM is not enlightened: it has no VMBus or integration components");

}  // namespace

grpc::Status WorkerServiceImpl::ShutdownGuest(
    grpc::ServerContext*,
    const hvstack::internal::ShutdownGuestRequest* request,
    hvstack::internal::ShutdownGuestResponse*) {
  if (!hooks_.shutdown_guest) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "guest offers no shutdown channel (the VM is not "
                        "enlightened); stop the VM instead");
  }
  return ToGrpc(hooks_.shutdown_guest(request->reboot(), request->reason()));
}

grpc::Status WorkerServiceImpl::GetKvp(
    grpc::ServerContext*, const hvstack::internal::KvpGetRequest* request,
    hvstack::internal::KvpGetResponse* response) {
  if (!hooks_.kvp_get) return kNotEnlightened;
  absl::StatusOr<std::string> v =
      hooks_.kvp_get(request->pool(), request->key());
  if (!v.ok()) return ToGrpc(v.status());
  response->set_value(*v);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::SetKvp(
    grpc::ServerContext*, const hvstack::internal::KvpSetRequest* request,
    hvstack::internal::KvpSetResponse*) {
  if (!hooks_.kvp_set) return kNotEnlightened;
  return ToGrpc(
      hooks_.kvp_set(request->pool(), request->key(), request->value()));
}

grpc::Status WorkerServiceImpl::SetNicLink(
    grpc::ServerContext*, const hvstack::internal::SetNicLinkRequest* request,
    hvstack::internal::SetNicLinkResponse*) {
  if (!hooks_.set_nic_link) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "the VM has no network adapters");
  }
  return ToGrpc(hooks_.set_nic_link(request->index(), request->connected()));
}

grpc::Status WorkerServiceImpl::ListKvp(
    grpc::ServerContext*, const hvstack::internal::KvpListRequest* request,
    hvstack::internal::KvpListResponse* response) {
  if (!hooks_.kvp_list) return kNotEnlightened;
  absl::StatusOr<std::map<std::string, std::string>> items =
      hooks_.kvp_list(request->pool());
  if (!items.ok()) return ToGrpc(items.status());
  for (const auto& [k, v] : *items) (*response->mutable_items())[k] = v;
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Pause(grpc::ServerContext*,
                                      const hvstack::internal::PauseRequest*,
                                      hvstack::internal::PauseResponse*) {
  if (!hooks_.pause)
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        "this worker cannot pause its VM");
  return ToGrpc(hooks_.pause());
}

grpc::Status WorkerServiceImpl::Resume(grpc::ServerContext*,
                                       const hvstack::internal::ResumeRequest*,
                                       hvstack::internal::ResumeResponse*) {
  if (!hooks_.resume)
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        "this worker cannot resume its VM");
  return ToGrpc(hooks_.resume());
}

grpc::Status WorkerServiceImpl::SaveState(
    grpc::ServerContext*, const hvstack::internal::SaveStateRequest* request,
    hvstack::internal::SaveStateResponse* response) {
  if (!hooks_.save_state)
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        "this worker cannot save its VM");
  absl::StatusOr<hvstack::internal::SaveStateResponse> r =
      hooks_.save_state(*request);
  if (!r.ok()) return ToGrpc(r.status());
  *response = *std::move(r);
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
  ActiveStream active(&mu_, &active_streams_);
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

grpc::Status WorkerServiceImpl::WriteConsole(
    grpc::ServerContext* context,
    grpc::ServerReader<hvstack::internal::ConsoleInput>* reader,
    hvstack::internal::ConsoleInputSummary* response) {
  {
    absl::MutexLock lock(&mu_);
    input_calls_.insert(context);
  }
  struct Unregister {
    absl::Mutex* mu;
    std::set<grpc::ServerContext*>* calls;
    grpc::ServerContext* context;
    ~Unregister() {
      absl::MutexLock lock(mu);
      calls->erase(context);
    }
  } unregister{&mu_, &input_calls_, context};
  hvstack::internal::ConsoleInput input;
  uint64_t accepted = 0, dropped = 0;
  while (reader->Read(&input)) {
    const std::string& data = input.data();
    const size_t n = hooks_.console_input ? hooks_.console_input(data) : 0;
    accepted += n;
    dropped += data.size() - std::min(n, data.size());
  }
  response->set_accepted(accepted);
  response->set_dropped(dropped);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::WatchEvents(
    grpc::ServerContext* context,
    const hvstack::internal::WatchEventsRequest* request,
    grpc::ServerWriter<hvstack::internal::WorkerEvent>* writer) {
  if (events_ == nullptr) return grpc::Status::OK;
  ActiveStream active(&mu_, &active_streams_);
  uint64_t after = request->after_sequence();
  while (!context->IsCancelled()) {
    WorkerEventLog::Batch batch =
        events_->WaitAfter(after, absl::Now() + kFollowPollInterval);
    for (const auto& event : batch.events) {
      if (!writer->Write(event)) return grpc::Status::OK;  // Client gone.
      after = event.sequence();
    }
    if (batch.closed) break;
  }
  return grpc::Status::OK;
}

void WorkerServiceImpl::EndInputStreams() {
  absl::MutexLock lock(&mu_);
  for (grpc::ServerContext* context : input_calls_) context->TryCancel();
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
