#ifndef HVSTACK_TESTS_HARNESS_PRIVATE_NETWORK_H_
#define HVSTACK_TESTS_HARNESS_PRIVATE_NETWORK_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

// Network tests never touch the host's interfaces: they move into a network
// namespace of their own, with bridges and addresses they make there, and run
// vmms inside it (its TAP devices then live there too).
namespace hvtest {

// Moves the calling thread, and every thread and process it starts from now
// on, into a new network namespace with only loopback (brought up). Call on
// the test's main thread (gtest runs tests there) before vmms is started.
// Needs root; the error says why it is not possible.
absl::Status EnterPrivateNetworkNamespace();

// Runs `ip ARGS` (iproute2, split on blanks); the error has its stderr.
absl::Status Ip(const std::string& args);
// The same with the arguments as given (for values with blanks).
absl::Status Ip(const std::vector<std::string>& args);

// A Linux bridge, up, with `cidr` (e.g. "10.77.0.1/24") as its address when
// not empty.
absl::Status AddBridge(const std::string& name, const std::string& cidr = "");

// `ip -d -j link show dev NAME`: the link as iproute2 reports it (ifname,
// mtu, flags, master, ifalias, linkinfo.info_kind ...), or null when there is
// no such link.
nlohmann::json LinkDetails(const std::string& name);

}  // namespace hvtest

#endif  // HVSTACK_TESTS_HARNESS_PRIVATE_NETWORK_H_
