// VmService's adoption calls (libvirt backend): ListLibvirtDomains,
// AdoptLibvirtDomain, ReleaseLibvirtDomain.
#include "vmms/request_peer.h"
#include "vmms/service_support.h"
#include "vmms/validation.h"
#include "vmms/vm_service.h"

namespace vmms {

grpc::Status VmServiceImpl::ListLibvirtDomains(
    grpc::ServerContext*, const hvstack::v1::ListLibvirtDomainsRequest*,
    hvstack::v1::ListLibvirtDomainsResponse* response) {
  absl::StatusOr<hvstack::v1::ListLibvirtDomainsResponse> domains =
      vms_->ListUnmanagedLibvirtDomains();
  if (!domains.ok()) return ToGrpc(domains.status());
  *response = *std::move(domains);
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::AdoptLibvirtDomain(
    grpc::ServerContext* context,
    const hvstack::v1::AdoptLibvirtDomainRequest* request,
    hvstack::v1::Vm* response) {
  absl::StatusOr<std::string> peer = access_->AuthorizeChange(
      context, "AdoptLibvirtDomain",
      request->name().empty() ? request->domain() : request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  absl::StatusOr<Vm> vm =
      vms_->AdoptLibvirtDomain(request->domain(), request->name());
  if (!vm.ok()) return ToGrpc(vm.status());
  *response = *std::move(vm);
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::ReleaseLibvirtDomain(
    grpc::ServerContext* context,
    const hvstack::v1::ReleaseLibvirtDomainRequest* request,
    hvstack::v1::ReleaseLibvirtDomainResponse* response) {
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<std::string> peer = access_->AuthorizeChange(
      context, "ReleaseLibvirtDomain", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  absl::StatusOr<Vm> released =
      vms_->ReleaseLibvirtDomain(request->name(), OpDeadline(context));
  if (!released.ok()) return ToGrpc(released.status());
  response->set_domain_name(released->libvirt().domain_name());
  response->set_domain_uuid(released->libvirt().domain_uuid());
  return grpc::Status::OK;
}

}  // namespace vmms
