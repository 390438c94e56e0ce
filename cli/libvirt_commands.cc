#include "cli/libvirt_commands.h"

#include <grpcpp/grpcpp.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/call_support.h"
#include "cli/exit_codes.h"
#include "cli/output.h"

namespace vmctl {

int LibvirtListCommand(Session& session) {
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  hvstack::v1::ListLibvirtDomainsResponse response;
  grpc::Status status = session.stub->ListLibvirtDomains(
      &context, hvstack::v1::ListLibvirtDomainsRequest(), &response);
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(response)
                                : FormatLibvirtDomains(response));
  return kExitOk;
}

int LibvirtAdoptCommand(Session& session, const std::string& domain,
                        const std::string& name) {
  hvstack::v1::AdoptLibvirtDomainRequest request;
  request.set_domain(domain);
  request.set_name(name);
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  hvstack::v1::Vm vm;
  grpc::Status status =
      session.stub->AdoptLibvirtDomain(&context, request, &vm);
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(vm) : FormatVm(vm));
  return kExitOk;
}

int LibvirtReleaseCommand(Session& session, const std::string& name) {
  hvstack::v1::ReleaseLibvirtDomainRequest request;
  request.set_name(name);
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  hvstack::v1::ReleaseLibvirtDomainResponse response;
  grpc::Status status =
      session.stub->ReleaseLibvirtDomain(&context, request, &response);
  if (!status.ok()) return Fail(session, status);
  if (session.json) {
    *session.out << FormatJson(response);
  } else {
    *session.out << "VM '" << name << "' released: libvirt domain "
                 << response.domain_name() << " (" << response.domain_uuid()
                 << ") is libvirt's again, unchanged\n";
  }
  return kExitOk;
}

std::string FormatLibvirtDomains(
    const hvstack::v1::ListLibvirtDomainsResponse& domains) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "UUID", "STATE", "CPUS", "MEMORY", "PERSISTENT"}};
  for (const hvstack::v1::LibvirtDomainSummary& d : domains.domains()) {
    rows.push_back({d.name(), d.uuid(), d.state(), absl::StrCat(d.vcpus()),
                    absl::StrCat(d.memory_mib(), " MiB"),
                    d.persistent() ? "yes" : "no"});
  }
  return FormatColumns(rows);
}

}  // namespace vmctl
