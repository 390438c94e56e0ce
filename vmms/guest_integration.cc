#include "vmms/guest_integration.h"

#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/hvstack/internal/worker.grpc.pb.h"
#include "vmms/worker_client.h"

namespace vmms {
namespace {

using hvstack::internal::WorkerService;

// The worker waits up to 10 s for the guest; give it a little more.

std::unique_ptr<WorkerService::Stub> Connect(const std::string& socket) {
  return WorkerService::NewStub(grpc::CreateChannel(
      absl::StrCat("unix:", socket), grpc::InsecureChannelCredentials()));
}

void SetDeadline(grpc::ClientContext& ctx, absl::Duration timeout) {
  ctx.set_deadline(std::chrono::system_clock::now() +
                   absl::ToChronoMilliseconds(timeout));
}

absl::Status FromGrpc(const std::string& vm, const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return absl::UnavailableError(
        absl::StrCat("VM '", vm, "': its worker did not answer (",
                     s.error_message(), "); it may be stopping, try again"));
  }
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat("VM '", vm, "': ", s.error_message()));
}

}  // namespace

hvstack::v1::GuestIntegration ToPublicIntegration(
    const hvstack::internal::GuestIntegration& in) {
  hvstack::v1::GuestIntegration out;
  out.set_enlightened(in.enlightened());
  out.set_heartbeat(
      static_cast<hvstack::v1::GuestIntegration::Heartbeat>(in.heartbeat()));
  out.set_heartbeat_sequence(in.heartbeat_sequence());
  if (in.last_heartbeat_us() > 0) {
    *out.mutable_last_heartbeat_time() =
        google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
            in.last_heartbeat_us());
  }
  if (in.vmbus_version() != 0) {
    out.set_vmbus_version(absl::StrFormat("%d.%d", in.vmbus_version() >> 16,
                                          in.vmbus_version() & 0xFFFF));
  }
  for (const auto& c : in.channels()) {
    if (c.open() && c.negotiated()) out.add_channels(c.name());
    hvstack::v1::IntegrationComponent* component = out.add_components();
    component->set_name(c.name());
    component->set_offered(c.offered());
    component->set_opened(c.open());
    component->set_negotiated(c.negotiated());
  }
  for (const auto& [k, v] : in.intrinsic()) (*out.mutable_intrinsic())[k] = v;
  if (auto it = in.intrinsic().find("OSName"); it != in.intrinsic().end())
    out.set_os_name(it->second);
  if (auto it = in.intrinsic().find("FullyQualifiedDomainName");
      it != in.intrinsic().end())
    out.set_host_name(it->second);
  out.set_time_samples(in.time_samples_answered());
  return out;
}

// The worker's enum mirrors the public one value for value.
static_assert(
    static_cast<int>(hvstack::v1::GuestIntegration::HEARTBEAT_LOST) ==
    static_cast<int>(hvstack::internal::GuestIntegration::HEARTBEAT_LOST));
static_assert(
    static_cast<int>(hvstack::v1::GuestIntegration::HEARTBEAT_OK) ==
    static_cast<int>(hvstack::internal::GuestIntegration::HEARTBEAT_OK));

absl::StatusOr<uint32_t> KvpPoolNumber(hvstack::v1::KvpPool pool) {
  switch (pool) {
    case hvstack::v1::KVP_POOL_UNSPECIFIED:
    case hvstack::v1::KVP_POOL_EXTERNAL:
      return 0;
    case hvstack::v1::KVP_POOL_GUEST:
      return 1;
    case hvstack::v1::KVP_POOL_AUTO:
      return 2;
    case hvstack::v1::KVP_POOL_AUTO_EXTERNAL:
      return 3;
    case hvstack::v1::KVP_POOL_AUTO_INTERNAL:
      return 4;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("KVP pool ", static_cast<int>(pool),
                       " does not exist; use external, guest, auto, "
                       "auto_external or auto_internal"));
  }
}

hvstack::v1::GuestIntegration QueryIntegration(const std::string& socket,
                                               absl::Duration timeout) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  hvstack::internal::WorkerStatus status;
  grpc::Status s = Connect(socket)->GetStatus(&ctx, {}, &status);
  if (!s.ok()) {
    hvstack::v1::GuestIntegration out;
    out.set_error(
        absl::StrCat("the worker did not answer: ", s.error_message()));
    return out;
  }
  return ToPublicIntegration(status.integration());
}

absl::StatusOr<std::string> WorkerGetKvp(const std::string& vm,
                                         const std::string& socket,
                                         uint32_t pool,
                                         const std::string& key) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, kGuestAnswerRpcTimeout);
  hvstack::internal::KvpGetRequest request;
  request.set_pool(pool);
  request.set_key(key);
  hvstack::internal::KvpGetResponse response;
  if (absl::Status s =
          FromGrpc(vm, Connect(socket)->GetKvp(&ctx, request, &response));
      !s.ok())
    return s;
  return response.value();
}

absl::Status WorkerSetKvp(const std::string& vm, const std::string& socket,
                          uint32_t pool, const std::string& key,
                          const std::string& value) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, kGuestAnswerRpcTimeout);
  hvstack::internal::KvpSetRequest request;
  request.set_pool(pool);
  request.set_key(key);
  request.set_value(value);
  hvstack::internal::KvpSetResponse response;
  return FromGrpc(vm, Connect(socket)->SetKvp(&ctx, request, &response));
}

absl::StatusOr<hvstack::v1::ListKvpResponse> WorkerListKvp(
    const std::string& vm, const std::string& socket, uint32_t pool) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, kGuestAnswerRpcTimeout);
  hvstack::internal::KvpListRequest request;
  request.set_pool(pool);
  hvstack::internal::KvpListResponse response;
  if (absl::Status s =
          FromGrpc(vm, Connect(socket)->ListKvp(&ctx, request, &response));
      !s.ok())
    return s;
  std::map<std::string, std::string> sorted(response.items().begin(),
                                            response.items().end());
  hvstack::v1::ListKvpResponse out;
  for (const auto& [k, v] : sorted) {
    hvstack::v1::KvpItem* item = out.add_items();
    item->set_key(k);
    item->set_value(v);
  }
  return out;
}

}  // namespace vmms
