#ifndef HVSTACK_VMMS_HOST_NET_H_
#define HVSTACK_VMMS_HOST_NET_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/scoped_fd.h"

// The host's network interfaces in vmms's own network namespace, through
// rtnetlink (libnl-route-3) and /dev/net/tun: just what the network adapters'
// TAP devices need. Stateless; every call opens its own netlink socket, so
// all of it is thread-safe. Needs CAP_NET_ADMIN for changes.
namespace vmms::hostnet {

struct LinkInfo {
  std::string name;
  int ifindex = 0;
  // IFLA_INFO_KIND: "bridge", "tun", "veth", ...; empty for devices without
  // one (physical NICs, lo).
  std::string kind;
  // IFLA_IFALIAS, empty when unset.
  std::string alias;
  // The bridge (or other master) it is attached to; 0 / empty for none.
  int master_ifindex = 0;
  std::string master;
  bool up = false;
  uint32_t mtu = 0;
};

// The link named `name`, or nullopt when there is none.
absl::StatusOr<std::optional<LinkInfo>> FindLink(const std::string& name);
// Every link of the namespace.
absl::StatusOr<std::vector<LinkInfo>> ListLinks();

// OK when `name` is a Linux bridge; NOT_FOUND when there is no such
// interface, FAILED_PRECONDITION when it is something else (both say so).
absl::Status CheckBridge(const std::string& name);

struct TapRequest {
  std::string name;
  // IFLA_IFALIAS (how vmms recognizes its own devices later).
  std::string alias;
  // Attach to this bridge; empty: leave unattached.
  std::string bridge;
  uint32_t mtu = 1500;
  // IFF_VNET_HDR, with TUNSETOFFLOAD `offloads` (TUN_F_* flags).
  bool vnet_hdr = false;
  uint32_t offloads = 0;
};

// Creates the TAP device (IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL, plus
// IFF_VNET_HDR when asked), not persistent: it disappears, with its bridge
// port, when the last descriptor of it closes. Sets its alias and MTU,
// attaches it to the bridge and brings it up. Returns the descriptor
// (O_NONBLOCK, O_CLOEXEC). Errors name the device and the step;
// FAILED_PRECONDITION for a missing bridge, a name in use or a host without
// /dev/net/tun, PERMISSION_DENIED without CAP_NET_ADMIN.
absl::StatusOr<base::ScopedFd> CreateTap(const TapRequest& request);

// Removes the link named `name`; OK when there is none.
absl::Status DeleteLink(const std::string& name);

}  // namespace vmms::hostnet

#endif  // HVSTACK_VMMS_HOST_NET_H_
