#ifndef HVSTACK_CLI_NIC_COMMANDS_H_
#define HVSTACK_CLI_NIC_COMMANDS_H_

#include <string>

#include "absl/status/statusor.h"
#include "cli/commands.h"
#include "proto/hvstack/v1/vm.pb.h"

// vmctl's network adapter commands and the `--nic` syntax.
namespace vmctl {

// An adapter as `--nic` and `vmctl nic add` take it: comma-separated
// key=value pairs, bridge=NAME (attach its TAP device to that bridge),
// mac=xx:xx:xx:xx:xx:xx, mtu=N; or the word `tap` (with optional mac= and
// mtu=) for a TAP device left unattached. Without bridge= the TAP device is
// unattached too. vmms checks the values; this only checks the syntax.
// INVALID_ARGUMENT saying what is wrong.
absl::StatusOr<hvstack::v1::NicConfig> ParseNicSpec(const std::string& spec);

// `vmctl nic add NAME SPEC`: prints the VM like show.
int NicAddCommand(Session& session, const std::string& name,
                  const std::string& spec);
// `vmctl nic remove NAME MAC|INDEX`: an index is looked up (GetVm) first.
int NicRemoveCommand(Session& session, const std::string& name,
                     const std::string& which);
// `vmctl nic list NAME`: INDEX MAC BRIDGE MTU HOST_INTERFACE PRESENT.
int NicListCommand(Session& session, const std::string& name);

// One line per adapter for `show`: "nic0: 02:68:76:0a:0b:0c bridge=br0
// mtu=1500 host_interface=hv1a2b3c4d5en0 (present)".
std::string FormatNicLines(const hvstack::v1::Vm& vm);
// The `nic list` table.
std::string FormatNicTable(const hvstack::v1::ListNicsResponse& nics);

}  // namespace vmctl

#endif  // HVSTACK_CLI_NIC_COMMANDS_H_
