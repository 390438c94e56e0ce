#ifndef HVSTACK_VMMS_LIBVIRT_XML_H_
#define HVSTACK_VMMS_LIBVIRT_XML_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "proto/hvstack/v1/vm.pb.h"

namespace vmms {

// The metadata namespace of the domains vmms defines or adopts: their
// <metadata> holds <hvstack:vm uuid="..." name="..."/> in it.
inline constexpr char kLibvirtMetadataUri[] = "https://hvstack.dev/libvirt/1";
inline constexpr char kLibvirtMetadataPrefix[] = "hvstack";

// The libvirt name of the domain vmms defines for VM `vm_name`.
std::string LibvirtDomainName(absl::string_view vm_name);

// `text` with &, <, >, ' and " escaped for XML text and attribute values.
std::string XmlEscape(absl::string_view text);

// The <hvstack:vm .../> element that tags a domain as VM `vm`'s.
std::string LibvirtMetadataElement(const hvstack::v1::Vm& vm);

// What of `config` the libvirt backend cannot give a domain, as
// FAILED_PRECONDITION naming it and what to do (OK when everything maps):
// VHDX disks (raw and qcow2 map), adapters without a bridge (a bridge maps).
// `vm_name` names the VM.
absl::Status LibvirtSupports(absl::string_view vm_name,
                             const hvstack::v1::VmConfig& config);

// The persistent domain for a libvirt VM defined by vmms: libvirt's UUID is
// the VM's, the name LibvirtDomainName, direct kernel boot of the VM's
// kernel/initrd/cmdline on an i440FX machine with ACPI, its vCPUs and memory,
// COM1 as the serial console (a pty), no graphics, no USB, no balloon. The
// guest's power-off destroys the domain (shut off (shutdown)), its reboot
// resets it; a pvpanic device (isa, 0x505) lets the guest report a crash,
// and <on_crash> is the VM's on_guest_crash: stop destroys the domain (shut
// off (crashed)), restart resets it, preserve keeps it paused (crashed
// (panicked)).
// Disks are virtio-scsi disks (<disk> with the image's format, read-only,
// serial, and the VM's SCSI address as controller/target/unit); adapters are
// <interface type='bridge'> with the VM's MAC (and MTU), virtio models.
// Call LibvirtSupports first: what it refuses is left out here.
std::string LibvirtDomainXml(const hvstack::v1::Vm& vm);

}  // namespace vmms

#endif  // HVSTACK_VMMS_LIBVIRT_XML_H_
