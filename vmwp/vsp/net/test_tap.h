#ifndef HVSTACK_VMWP_VSP_NET_TEST_TAP_H_
#define HVSTACK_VMWP_VSP_NET_TEST_TAP_H_

// Test helpers for real TAP devices, always in a network namespace the test
// made for itself (the host's network is never touched): the namespace,
// TAP devices (opened the way vmms opens them), bridges, and an AF_PACKET
// socket on each TAP interface that plays "the wire" (what the TAP receives
// from the worker, and what it sends to it).

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/scoped_fd.h"

namespace vsp::net::testing {

// Moves the calling process (call it before starting threads) into a new
// network namespace. Empty on success, else why not (a skip reason).
std::string EnterNewNetworkNamespace();

struct TestTap {
  std::string name;
  int ifindex = 0;
  base::ScopedFd fd;    // the TAP descriptor (IFF_TAP | IFF_NO_PI ...)
  base::ScopedFd wire;  // AF_PACKET on the interface
};

// A TAP device `name`, non-blocking, with the virtio-net header and no
// offloads when `vnet_header` (as vmms opens them), `mtu`, a transmit queue
// of `txqueuelen` frames (0: the default), up.
absl::StatusOr<TestTap> CreateTap(const std::string& name, bool vnet_header,
                                  uint32_t mtu = 1500, uint32_t txqueuelen = 0);
// A bridge (STP off: ports forward at once), up; and enslaving an interface.
absl::Status CreateBridge(const std::string& name);
absl::Status AddToBridge(const std::string& bridge, const std::string& ifname);

// The next frame with `ethertype` that the TAP interface received from its
// descriptor (the worker), or nullopt after `timeout`. Frames the socket
// sent itself and other ethertypes are skipped.
std::optional<std::vector<uint8_t>> WireReceive(
    TestTap& tap, uint16_t ethertype,
    absl::Duration timeout = absl::Seconds(5));
// Transmits `frame` on the TAP interface: the worker reads it from the
// descriptor.
absl::Status WireSend(TestTap& tap, std::span<const uint8_t> frame);

}  // namespace vsp::net::testing

#endif  // HVSTACK_VMWP_VSP_NET_TEST_TAP_H_
