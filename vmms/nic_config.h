#ifndef HVSTACK_VMMS_NIC_CONFIG_H_
#define HVSTACK_VMMS_NIC_CONFIG_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/hvstack/v1/vm.pb.h"

// A VM's network adapters as vmms defines them: MAC addresses, host
// interface names, and the checks a definition gets before it is stored.
// Nothing here touches the host's network (see host_net.h, nic_backend.h).
namespace vmms {

// Hyper-V gives a VM at most 8 synthetic network adapters; so do we.
inline constexpr uint32_t kMaxNics = 8;
// Link MTU bounds (netvsp's: Linux's minimum, jumbo frames up to 9000).
inline constexpr uint32_t kDefaultNicMtu = 1500;
inline constexpr uint32_t kMinNicMtu = 68;
inline constexpr uint32_t kMaxNicMtu = 9000;

using MacAddress = std::array<uint8_t, 6>;

// The prefix of the MACs vmms generates: 02:68:76 ("hv"), locally
// administered (bit 1 of the first octet set) and unicast (bit 0 clear), so
// it never collides with a vendor's address.
inline constexpr MacAddress kGeneratedMacPrefix = {0x02, 0x68, 0x76, 0, 0, 0};

// "xx:xx:xx:xx:xx:xx" (either case) -> bytes. INVALID_ARGUMENT naming
// `field` and the value otherwise.
absl::StatusOr<MacAddress> ParseMac(absl::string_view text,
                                    absl::string_view field);
// Lower case, colon-separated.
std::string FormatMac(const MacAddress& mac);
// kGeneratedMacPrefix + 3 random bytes.
MacAddress GenerateMac();

// The adapter's TAP device on the host: "hv" + the first 10 hex digits of the
// VM's uuid + "n" + index, 14 characters (IFNAMSIZ is 16 with the NUL).
std::string HostInterfaceName(absl::string_view vm_uuid, uint32_t index);
// What vmms writes as the TAP device's alias (IFLA_IFALIAS), and how it tells
// its own devices at reconcile: "hvstack vm <uuid> nic <index>".
std::string HostInterfaceAlias(absl::string_view vm_uuid, uint32_t index);
// The inverse of HostInterfaceAlias: the VM uuid and index, or false for any
// other alias.
bool ParseHostInterfaceAlias(absl::string_view alias, std::string* vm_uuid,
                             uint32_t* index);

// A Linux interface name as the kernel accepts it (dev_valid_name): 1-15
// bytes, not "." or "..", no '/', ':' or whitespace. INVALID_ARGUMENT naming
// `field`.
absl::Status ValidateInterfaceName(absl::string_view name,
                                   absl::string_view field);

// The shape of one adapter in a request (nothing about the host or other
// VMs): a MAC that is empty or a well-formed unicast, non-zero address, a
// bridge that is empty or a valid interface name, an MTU of 0 (1500) or
// kMinNicMtu..kMaxNicMtu. `field` names it in errors ("config.nics[1]").
// Returns the adapter with its MAC in canonical form and its MTU set.
absl::StatusOr<hvstack::v1::NicConfig> NormalizeNic(
    const hvstack::v1::NicConfig& nic, absl::string_view field);

// CreateVm: at most kMaxNics adapters, each normalized, no MAC twice in the
// request. Indices are assigned in order. INVALID_ARGUMENT naming the
// adapter.
absl::Status NormalizeNics(hvstack::v1::VmConfig& config);

// What each adapter of a VM looks like on the host (names only; presence is
// the backend's business).
hvstack::v1::NicStatus DescribeNic(absl::string_view vm_uuid,
                                   const hvstack::v1::NicConfig& nic);

}  // namespace vmms

#endif  // HVSTACK_VMMS_NIC_CONFIG_H_
