#include "vmms/nic_backend.h"

#include <spdlog/spdlog.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "vmms/host_net.h"
#include "vmms/nic_config.h"

namespace vmms {
namespace {

// The device `name` if it is VM `uuid`'s adapter `index` (by its alias).
bool IsOurDevice(const hostnet::LinkInfo& link, const std::string& uuid,
                 uint32_t index) {
  std::string owner;
  uint32_t owner_index = 0;
  return ParseHostInterfaceAlias(link.alias, &owner, &owner_index) &&
         owner == uuid && owner_index == index;
}

}  // namespace

std::vector<std::pair<int, int>> OpenedNics::InheritedFds() const {
  std::vector<std::pair<int, int>> fds;
  for (size_t i = 0; i < taps.size(); ++i)
    fds.emplace_back(taps[i].get(), config[i].tap_fd());
  return fds;
}

absl::StatusOr<OpenedNics> OpenNics(const hvstack::v1::Vm& vm) {
  OpenedNics opened;
  for (const hvstack::v1::NicConfig& nic : vm.config().nics()) {
    const std::string name = HostInterfaceName(vm.uuid(), nic.index());
    const std::string alias = HostInterfaceAlias(vm.uuid(), nic.index());
    auto fail = [&](absl::string_view problem) {
      return absl::FailedPreconditionError(
          absl::StrCat("VM '", vm.name(), "' network adapter ", nic.index(),
                       " (", nic.mac(), "): ", problem));
    };
    absl::StatusOr<MacAddress> mac = ParseMac(nic.mac(), "mac");
    if (!mac.ok()) return fail(mac.status().message());
    // A device of this very adapter left behind (a persistent one, or one a
    // crash between steps kept): ours to replace. Anything else of that name
    // makes CreateTap fail (IFF_TUN_EXCL) and is left alone.
    absl::StatusOr<std::optional<hostnet::LinkInfo>> stale =
        hostnet::FindLink(name);
    if (stale.ok() && stale->has_value() &&
        IsOurDevice(**stale, vm.uuid(), nic.index())) {
      spdlog::warn("VM {}: removing leftover host interface {}", vm.name(),
                   name);
      if (absl::Status s = hostnet::DeleteLink(name); !s.ok())
        return fail(s.message());
    }
    hostnet::TapRequest request;
    request.name = name;
    request.alias = alias;
    request.bridge = nic.bridge();
    request.mtu = nic.mtu() == 0 ? kDefaultNicMtu : nic.mtu();
    request.vnet_hdr = true;
    request.offloads = 0;
    absl::StatusOr<base::ScopedFd> tap = hostnet::CreateTap(request);
    if (!tap.ok()) {
      if (absl::IsPermissionDenied(tap.status())) {
        return absl::PermissionDeniedError(
            absl::StrCat("VM '", vm.name(), "' network adapter ", nic.index(),
                         ": ", tap.status().message()));
      }
      return fail(tap.status().message());
    }
    hvstack::internal::WorkerNic worker_nic;
    worker_nic.set_index(nic.index());
    worker_nic.set_mac(std::string(mac->begin(), mac->end()));
    worker_nic.set_tap_fd(kWorkerFirstNicFd + static_cast<int>(nic.index()));
    worker_nic.set_vnet_hdr(request.vnet_hdr);
    worker_nic.set_mtu(request.mtu);
    worker_nic.set_host_ifname(name);
    worker_nic.set_bridge(nic.bridge());
    opened.taps.push_back(*std::move(tap));
    opened.config.push_back(std::move(worker_nic));
  }
  return opened;
}

void RemoveNicDevices(const std::string& vm_name, const std::string& uuid,
                      const std::vector<uint32_t>& indices) {
  for (uint32_t index : indices) {
    const std::string name = HostInterfaceName(uuid, index);
    absl::StatusOr<std::optional<hostnet::LinkInfo>> link =
        hostnet::FindLink(name);
    if (!link.ok()) {
      spdlog::warn("VM {}: cannot check host interface {}: {}", vm_name, name,
                   std::string(link.status().message()));
      continue;
    }
    if (!link->has_value() || !IsOurDevice(**link, uuid, index)) continue;
    if (absl::Status s = hostnet::DeleteLink(name); !s.ok()) {
      spdlog::error("VM {}: cannot remove host interface {}: {}", vm_name, name,
                    std::string(s.message()));
    } else {
      spdlog::info("VM {}: removed host interface {} after its worker ended",
                   vm_name, name);
    }
  }
}

int ReconcileNicDevices(
    const std::vector<hvstack::v1::Vm>& vms,
    const std::function<bool(const std::string& uuid)>& has_worker) {
  absl::StatusOr<std::vector<hostnet::LinkInfo>> links = hostnet::ListLinks();
  if (!links.ok()) {
    spdlog::warn("cannot list host interfaces to remove stale TAP devices: {}",
                 std::string(links.status().message()));
    return 0;
  }
  std::map<std::string, const hvstack::v1::Vm*> ours;
  for (const hvstack::v1::Vm& vm : vms) ours[vm.uuid()] = &vm;
  int removed = 0;
  for (const hostnet::LinkInfo& link : *links) {
    std::string uuid;
    uint32_t index = 0;
    if (!ParseHostInterfaceAlias(link.alias, &uuid, &index)) continue;
    auto it = ours.find(uuid);
    if (it == ours.end() || has_worker(uuid)) continue;
    if (absl::Status s = hostnet::DeleteLink(link.name); !s.ok()) {
      spdlog::error("VM {}: cannot remove stale host interface {}: {}",
                    it->second->name(), link.name, std::string(s.message()));
      continue;
    }
    spdlog::info(
        "VM {}: removed stale host interface {} (adapter {}): the "
        "VM has no worker",
        it->second->name(), link.name, index);
    ++removed;
  }
  return removed;
}

std::vector<hvstack::v1::NicStatus> NicStatuses(const hvstack::v1::Vm& vm) {
  std::vector<hvstack::v1::NicStatus> statuses;
  for (const hvstack::v1::NicConfig& nic : vm.config().nics()) {
    hvstack::v1::NicStatus status = DescribeNic(vm.uuid(), nic);
    absl::StatusOr<std::optional<hostnet::LinkInfo>> link =
        hostnet::FindLink(status.host_interface());
    status.set_present(link.ok() && link->has_value() &&
                       IsOurDevice(**link, vm.uuid(), nic.index()));
    statuses.push_back(std::move(status));
  }
  return statuses;
}

void AddNicStats(const hvstack::v1::Vm& vm,
                 const hvstack::internal::WorkerStatus& status,
                 hvstack::v1::VmStats* stats) {
  for (const hvstack::internal::WorkerNicStatus& from : status.nics()) {
    hvstack::v1::NicStats* to = stats->add_nics();
    to->set_index(from.index());
    for (const hvstack::v1::NicConfig& nic : vm.config().nics()) {
      if (nic.index() == from.index()) to->set_mac(nic.mac());
    }
    to->set_host_interface(HostInterfaceName(vm.uuid(), from.index()));
    to->set_from_guest_packets(from.from_guest_packets());
    to->set_from_guest_bytes(from.from_guest_bytes());
    to->set_from_guest_drops(from.from_guest_drops());
    to->set_to_guest_packets(from.to_guest_packets());
    to->set_to_guest_bytes(from.to_guest_bytes());
    to->set_to_guest_drops(from.to_guest_drops());
    to->set_link_up(from.link_up());
    to->set_guest_ready(from.guest_ready());
    to->mutable_drops_by_reason()->insert(from.drops_by_reason().begin(),
                                          from.drops_by_reason().end());
    to->set_protocol_errors(from.protocol_errors());
  }
}

void FillNicStatuses(hvstack::v1::Vm& vm) {
  vm.clear_nics();
  for (hvstack::v1::NicStatus& nic : NicStatuses(vm))
    *vm.add_nics() = std::move(nic);
}

absl::Status CheckNicBridge(const hvstack::v1::NicConfig& nic,
                            const std::string& field) {
  if (nic.bridge().empty()) return absl::OkStatus();
  absl::Status s = hostnet::CheckBridge(nic.bridge());
  if (s.ok()) return s;
  return absl::InvalidArgumentError(
      absl::StrCat(field, ".bridge: ", s.message()));
}

}  // namespace vmms
