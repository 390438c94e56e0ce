// VmService's checkpoint calls (issue 14): CreateCheckpoint, ListCheckpoints,
// ApplyCheckpoint, DeleteCheckpoint. The work is VmManager's
// (checkpoint_operations.cc).
#include "absl/strings/str_cat.h"
#include "vmms/request_peer.h"
#include "vmms/service_support.h"
#include "vmms/validation.h"
#include "vmms/vm_service.h"

namespace vmms {
namespace {

absl::Status ValidateNames(const std::string& vm,
                           const std::string& checkpoint) {
  if (absl::Status s = ValidateVmName(vm); !s.ok()) return s;
  if (absl::Status s = ValidateVmName(checkpoint); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint name: ", s.message()));
  }
  return absl::OkStatus();
}

}  // namespace

grpc::Status VmServiceImpl::CreateCheckpoint(
    grpc::ServerContext* context,
    const hvstack::v1::CreateCheckpointRequest* request,
    hvstack::v1::Checkpoint* response) {
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "CreateCheckpoint", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  if (absl::Status s = ValidateNames(request->name(), request->checkpoint());
      !s.ok()) {
    return ToGrpc(s);
  }
  absl::StatusOr<hvstack::v1::Checkpoint> created = vms_->CreateCheckpoint(
      request->name(), request->checkpoint(), OpDeadline(context));
  if (!created.ok()) return ToGrpc(created.status());
  *response = *std::move(created);
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::ListCheckpoints(
    grpc::ServerContext*, const hvstack::v1::ListCheckpointsRequest* request,
    hvstack::v1::ListCheckpointsResponse* response) {
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<std::vector<hvstack::v1::Checkpoint>> all =
      vms_->ListCheckpoints(request->name());
  if (!all.ok()) return ToGrpc(all.status());
  for (hvstack::v1::Checkpoint& c : *all)
    *response->add_checkpoints() = std::move(c);
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::ApplyCheckpoint(
    grpc::ServerContext* context,
    const hvstack::v1::ApplyCheckpointRequest* request,
    hvstack::v1::Vm* response) {
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "ApplyCheckpoint", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  if (absl::Status s = ValidateNames(request->name(), request->checkpoint());
      !s.ok()) {
    return ToGrpc(s);
  }
  absl::StatusOr<Vm> vm = vms_->ApplyCheckpoint(
      request->name(), request->checkpoint(), OpDeadline(context));
  if (!vm.ok()) return ToGrpc(vm.status());
  *response = vms_->ForReply(*std::move(vm));
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::DeleteCheckpoint(
    grpc::ServerContext* context,
    const hvstack::v1::DeleteCheckpointRequest* request,
    hvstack::v1::ListCheckpointsResponse* response) {
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "DeleteCheckpoint", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  if (absl::Status s = ValidateNames(request->name(), request->checkpoint());
      !s.ok()) {
    return ToGrpc(s);
  }
  absl::StatusOr<std::vector<hvstack::v1::Checkpoint>> rest =
      vms_->DeleteCheckpoint(request->name(), request->checkpoint(),
                             OpDeadline(context));
  if (!rest.ok()) return ToGrpc(rest.status());
  for (hvstack::v1::Checkpoint& c : *rest)
    *response->add_checkpoints() = std::move(c);
  return grpc::Status::OK;
}

}  // namespace vmms
