// VmService's network adapter calls: AddNic, RemoveNic, ListNics.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "vmms/nic_backend.h"
#include "vmms/nic_config.h"
#include "vmms/request_peer.h"
#include "vmms/service_support.h"
#include "vmms/validation.h"
#include "vmms/vm_service.h"

namespace vmms {
grpc::Status VmServiceImpl::AddNic(grpc::ServerContext* context,
                                   const hvstack::v1::AddNicRequest* request,
                                   hvstack::v1::Vm* response) {
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "AddNic", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<hvstack::v1::NicConfig> nic =
      NormalizeNic(request->nic(), "nic");
  if (!nic.ok()) return ToGrpc(nic.status());
  if (absl::Status s = CheckNicBridge(*nic, "nic"); !s.ok()) return ToGrpc(s);
  absl::StatusOr<Vm> vm =
      vms_->ChangeNics(request->name(), OpDeadline(context),
                       [&](const Vm& current) -> absl::StatusOr<Vm> {
                         hvstack::v1::VmConfig merged = current.config();
                         *merged.add_nics() = *nic;
                         if (absl::Status s = vms_->CheckHardwareChange(
                                 current, merged, "its adapters");
                             !s.ok()) {
                           return s;
                         }
                         return store_->AddNic(current.uuid(), *nic);
                       });
  if (!vm.ok()) return ToGrpc(vm.status());
  spdlog::info("VM {}: network adapter added ({} adapters) by {}", vm->name(),
               vm->config().nics_size(), *peer);
  *response = vms_->ForReply(*std::move(vm));
  FillNicStatuses(*response);
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::RemoveNic(
    grpc::ServerContext* context, const hvstack::v1::RemoveNicRequest* request,
    hvstack::v1::Vm* response) {
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "RemoveNic", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  if (request->mac().empty()) {
    return ToGrpc(absl::InvalidArgumentError(
        "mac is empty: name the adapter to remove by its MAC (vmctl nic list "
        "shows them)"));
  }
  absl::StatusOr<MacAddress> mac = ParseMac(request->mac(), "mac");
  if (!mac.ok()) return ToGrpc(mac.status());
  absl::StatusOr<Vm> vm = vms_->ChangeNics(
      request->name(), OpDeadline(context), [&](const Vm& current) {
        return store_->RemoveNic(current.uuid(), FormatMac(*mac));
      });
  if (!vm.ok()) return ToGrpc(vm.status());
  spdlog::info("VM {}: network adapter {} removed by {}", vm->name(),
               FormatMac(*mac), *peer);
  *response = vms_->ForReply(*std::move(vm));
  FillNicStatuses(*response);
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::ListNics(
    grpc::ServerContext*, const hvstack::v1::ListNicsRequest* request,
    hvstack::v1::ListNicsResponse* response) {
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<Vm> vm = store_->Get(request->name());
  if (!vm.ok()) return ToGrpc(vm.status());
  for (hvstack::v1::NicStatus& nic : NicStatuses(*vm))
    *response->add_nics() = std::move(nic);
  return grpc::Status::OK;
}

}  // namespace vmms
