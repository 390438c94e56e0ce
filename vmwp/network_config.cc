#include "vmwp/network_config.h"

#include <fcntl.h>

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/scoped_fd.h"

namespace vmwp {
namespace {

using hvstack::internal::WorkerNic;

std::string NicName(const WorkerNic& nic) {
  std::string name = absl::StrCat("nic", nic.index());
  if (!nic.host_ifname().empty()) {
    absl::StrAppend(&name, " (", nic.host_ifname());
    if (!nic.bridge().empty()) absl::StrAppend(&name, " on ", nic.bridge());
    absl::StrAppend(&name, ")");
  }
  return name;
}

// FNV-1a, 64 bits: a fixed function of the uuid text.
uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace

vmbus::Guid NetAdapterInstance(const std::string& vm_uuid, uint32_t index) {
  const uint64_t h = Fnv1a(vm_uuid);
  std::array<uint8_t, 8> tail;
  for (int i = 0; i < 8; ++i) tail[i] = static_cast<uint8_t>(h >> (56 - 8 * i));
  return vmbus::Guid::FromFields(0x68767374, 0x6e69,
                                 static_cast<uint16_t>(index), tail);
}

absl::StatusOr<std::vector<std::unique_ptr<vsp::net::NetAdapter>>>
BuildNetAdapters(const google::protobuf::RepeatedPtrField<WorkerNic>& nics,
                 const std::string& vm_uuid,
                 std::function<absl::Status()> on_thread_start) {
  // Own every descriptor first, so that all are closed on any error.
  std::vector<base::ScopedFd> fds;
  for (const WorkerNic& nic : nics) fds.emplace_back(nic.tap_fd());
  std::vector<std::unique_ptr<vsp::net::NetAdapter>> adapters;
  std::set<uint32_t> indexes;
  for (int i = 0; i < nics.size(); ++i) {
    const WorkerNic& nic = nics[i];
    const std::string name = NicName(nic);
    auto bad = [&](const std::string& problem) {
      return absl::InvalidArgumentError(
          absl::StrCat("network adapter ", name, ": ", problem));
    };
    if (!indexes.insert(nic.index()).second) {
      return bad(absl::StrCat("index ", nic.index(), " is used twice"));
    }
    if (nic.mac().size() != 6) {
      return bad(absl::StrCat("MAC address of ", nic.mac().size(),
                              " bytes (must be 6)"));
    }
    vsp::net::MacAddress mac;
    std::copy(nic.mac().begin(), nic.mac().end(), mac.begin());
    if (mac[0] & 1) {
      return bad(absl::StrFormat(
          "MAC address %02x:%02x:%02x:%02x:%02x:%02x is a multicast address",
          mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]));
    }
    if (mac == vsp::net::MacAddress{}) return bad("MAC address is all zero");
    if (nic.tap_fd() < 0 || ::fcntl(nic.tap_fd(), F_GETFD) < 0) {
      return bad(absl::StrCat("TAP descriptor ", nic.tap_fd(),
                              " is not open in the worker"));
    }
    vsp::net::NetAdapter::Config config;
    config.index = nic.index();
    config.mac = mac;
    config.mtu = nic.mtu();
    config.tap = std::move(fds[i]);
    config.vnet_header = nic.vnet_hdr();
    config.instance = NetAdapterInstance(vm_uuid, nic.index());
    config.name = name;
    absl::StatusOr<std::unique_ptr<vsp::net::NetAdapter>> adapter =
        vsp::net::NetAdapter::Create(std::move(config),
                                     {.on_thread_start = on_thread_start});
    if (!adapter.ok()) return adapter.status();
    adapters.push_back(*std::move(adapter));
  }
  return adapters;
}

hvstack::internal::WorkerNicStatus NicStatus(
    const vsp::net::NetAdapter& adapter) {
  const vsp::net::NicCounters& c = adapter.counters();
  hvstack::internal::WorkerNicStatus s;
  s.set_index(adapter.index());
  s.set_from_guest_packets(c.from_guest_packets.load());
  s.set_from_guest_bytes(c.from_guest_bytes.load());
  s.set_from_guest_drops(c.FromGuestDrops());
  s.set_to_guest_packets(c.to_guest_packets.load());
  s.set_to_guest_bytes(c.to_guest_bytes.load());
  s.set_to_guest_drops(c.ToGuestDrops());
  s.set_link_up(c.link_up.load());
  s.set_guest_ready(c.guest_ready.load());
  for (const auto& [reason, n] : c.ByReason())
    (*s.mutable_drops_by_reason())[reason] = n;
  s.set_nvsp_version(c.nvsp_version.load());
  s.set_packet_filter(c.packet_filter.load());
  s.set_protocol_errors(c.protocol_errors.load());
  return s;
}

}  // namespace vmwp
