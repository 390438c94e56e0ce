#include "cli/nic_commands.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/call_support.h"
#include "cli/exit_codes.h"
#include "cli/output.h"

namespace vmctl {
namespace {

std::string PresentText(bool present) { return present ? "present" : "absent"; }

}  // namespace

absl::StatusOr<hvstack::v1::NicConfig> ParseNicSpec(const std::string& spec) {
  hvstack::v1::NicConfig nic;
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "adapter '", spec, "': ", why,
        " (write bridge=BRIDGE[,mac=MAC][,mtu=N] or tap[,mac=MAC][,mtu=N])"));
  };
  if (spec.empty()) return invalid("empty");
  bool tap = false;
  std::vector<std::string> seen;
  for (absl::string_view part : absl::StrSplit(spec, ',')) {
    if (part == "tap") {
      tap = true;
      continue;
    }
    std::pair<std::string, std::string> kv = absl::StrSplit(part, '=');
    const std::string& key = kv.first;
    const std::string& value = kv.second;
    if (part.find('=') == absl::string_view::npos)
      return invalid(absl::StrCat("'", part, "' is not key=value"));
    if (std::find(seen.begin(), seen.end(), key) != seen.end())
      return invalid(absl::StrCat(key, "= is given twice"));
    seen.push_back(key);
    if (value.empty()) return invalid(absl::StrCat(key, "= has no value"));
    if (key == "bridge") {
      nic.set_bridge(value);
    } else if (key == "mac") {
      nic.set_mac(value);
    } else if (key == "mtu") {
      uint32_t mtu = 0;
      if (!absl::SimpleAtoi(value, &mtu))
        return invalid(absl::StrCat("mtu '", value, "' is not a number"));
      nic.set_mtu(mtu);
    } else {
      return invalid(absl::StrCat("unknown key '", key, "'"));
    }
  }
  if (tap && !nic.bridge().empty())
    return invalid("'tap' (unattached) and bridge= exclude each other");
  return nic;
}

int NicAddCommand(Session& session, const std::string& name,
                  const std::string& spec) {
  absl::StatusOr<hvstack::v1::NicConfig> nic = ParseNicSpec(spec);
  if (!nic.ok()) {
    *session.err << "vmctl: " << nic.status().message() << "\n";
    return kExitUsage;
  }
  hvstack::v1::AddNicRequest request;
  request.set_name(name);
  *request.mutable_nic() = *nic;
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  hvstack::v1::Vm vm;
  grpc::Status status = session.stub->AddNic(&context, request, &vm);
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(vm) : FormatVm(vm));
  return kExitOk;
}

int NicRemoveCommand(Session& session, const std::string& name,
                     const std::string& which) {
  hvstack::v1::RemoveNicRequest request;
  request.set_name(name);
  uint32_t index = 0;
  if (absl::SimpleAtoi(which, &index) && which.find(':') == std::string::npos) {
    hvstack::v1::GetVmRequest get;
    get.set_name(name);
    grpc::ClientContext context;
    SetDeadline(context, kQuickDeadline);
    hvstack::v1::Vm vm;
    grpc::Status status = session.stub->GetVm(&context, get, &vm);
    if (!status.ok()) return Fail(session, status);
    for (const hvstack::v1::NicConfig& nic : vm.config().nics()) {
      if (nic.index() == index) request.set_mac(nic.mac());
    }
    if (request.mac().empty()) {
      *session.err << "vmctl: VM '" << name << "' has no network adapter "
                   << index << " (vmctl nic list " << name << ")\n";
      return kExitNotFound;
    }
  } else {
    request.set_mac(which);
  }
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  hvstack::v1::Vm vm;
  grpc::Status status = session.stub->RemoveNic(&context, request, &vm);
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(vm) : FormatVm(vm));
  return kExitOk;
}

int NicListCommand(Session& session, const std::string& name) {
  hvstack::v1::ListNicsRequest request;
  request.set_name(name);
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  hvstack::v1::ListNicsResponse response;
  grpc::Status status = session.stub->ListNics(&context, request, &response);
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(response)
                                : FormatNicTable(response));
  return kExitOk;
}

std::string FormatNicLines(const hvstack::v1::Vm& vm) {
  std::string out;
  if (vm.nics_size() > 0) {
    for (const hvstack::v1::NicStatus& nic : vm.nics()) {
      absl::StrAppend(&out, "nic", nic.index(), ": ", nic.mac(),
                      " bridge=", nic.bridge().empty() ? "-" : nic.bridge(),
                      " mtu=", nic.mtu(),
                      " host_interface=", nic.host_interface(), " (",
                      PresentText(nic.present()), ")\n");
    }
    return out;
  }
  // ListVms and older servers: the definition only.
  for (const hvstack::v1::NicConfig& nic : vm.config().nics()) {
    absl::StrAppend(&out, "nic", nic.index(), ": ", nic.mac(),
                    " bridge=", nic.bridge().empty() ? "-" : nic.bridge(),
                    " mtu=", nic.mtu(), "\n");
  }
  return out;
}

std::string FormatNicTable(const hvstack::v1::ListNicsResponse& nics) {
  std::vector<std::vector<std::string>> rows = {
      {"INDEX", "MAC", "BRIDGE", "MTU", "HOST_INTERFACE", "PRESENT"}};
  for (const hvstack::v1::NicStatus& nic : nics.nics()) {
    rows.push_back({absl::StrCat(nic.index()), nic.mac(),
                    nic.bridge().empty() ? "-" : nic.bridge(),
                    absl::StrCat(nic.mtu()), nic.host_interface(),
                    nic.present() ? "yes" : "no"});
  }
  return FormatColumns(rows);
}

}  // namespace vmctl
