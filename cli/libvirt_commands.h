#ifndef HVSTACK_CLI_LIBVIRT_COMMANDS_H_
#define HVSTACK_CLI_LIBVIRT_COMMANDS_H_

#include <string>

#include "cli/commands.h"
#include "proto/hvstack/v1/vm.pb.h"

// vmctl's libvirt adoption commands (vmms --libvirt-uri).
namespace vmctl {

// `vmctl libvirt list`: the domains of vmms's libvirt that vmms does not
// manage: NAME UUID STATE CPUS MEMORY PERSISTENT.
int LibvirtListCommand(Session& session);
// `vmctl libvirt adopt DOMAIN [--name NAME]`: prints the new VM like show.
int LibvirtAdoptCommand(Session& session, const std::string& domain,
                        const std::string& name);
// `vmctl libvirt release NAME`: says which domain was handed back.
int LibvirtReleaseCommand(Session& session, const std::string& name);

// The `libvirt list` table.
std::string FormatLibvirtDomains(
    const hvstack::v1::ListLibvirtDomainsResponse& domains);

}  // namespace vmctl

#endif  // HVSTACK_CLI_LIBVIRT_COMMANDS_H_
