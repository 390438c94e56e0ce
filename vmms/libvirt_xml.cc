#include "vmms/libvirt_xml.h"

#include <set>

#include "absl/strings/str_cat.h"

namespace vmms {

std::string LibvirtDomainName(absl::string_view vm_name) {
  return absl::StrCat("hvstack-", vm_name);
}

std::string XmlEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '\'':
        out += "&apos;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string LibvirtMetadataElement(const hvstack::v1::Vm& vm) {
  return absl::StrCat("<", kLibvirtMetadataPrefix,
                      ":vm xmlns:", kLibvirtMetadataPrefix, "='",
                      kLibvirtMetadataUri, "' uuid='", XmlEscape(vm.uuid()),
                      "' name='", XmlEscape(vm.name()), "'/>");
}

absl::Status LibvirtSupports(absl::string_view vm_name,
                             const hvstack::v1::VmConfig& config) {
  auto refuse = [&](absl::string_view what) {
    return absl::FailedPreconditionError(absl::StrCat(
        "VM '", vm_name, "' uses the libvirt backend, which cannot give it ",
        what));
  };
  for (int i = 0; i < config.disks_size(); ++i) {
    const hvstack::v1::Disk& disk = config.disks(i);
    if (disk.format() == hvstack::v1::DISK_FORMAT_VHDX) {
      return refuse(absl::StrCat(
          "disk ", disk.path(),
          ": VHDX images are not offered through libvirt (raw and qcow2 "
          "are); convert it (qemu-img convert -O qcow2 ",
          disk.path(), " NEW.qcow2) or use the hvstack backend"));
    }
  }
  for (int i = 0; i < config.nics_size(); ++i) {
    const hvstack::v1::NicConfig& nic = config.nics(i);
    if (nic.bridge().empty()) {
      return refuse(absl::StrCat(
          "network adapter ", i, nic.mac().empty() ? "" : " (", nic.mac(),
          nic.mac().empty() ? "" : ")",
          ": an unattached TAP device is not offered through libvirt; give "
          "it a bridge (bridge=NAME) or use the hvstack backend"));
    }
  }
  return absl::OkStatus();
}

namespace {

// The domain's <on_crash>: what libvirt does when the guest reports a panic
// through the pvpanic device (vmms records the crash from libvirt's CRASHED
// event; LibvirtBackend).
const char* OnCrashAction(hvstack::v1::GuestCrashPolicy policy) {
  switch (policy) {
    case hvstack::v1::GUEST_CRASH_POLICY_RESTART:
      return "restart";  // A reset; QEMU and the console stay.
    case hvstack::v1::GUEST_CRASH_POLICY_PRESERVE:
      return "preserve";  // Kept paused, state "crashed (panicked)".
    default:
      return "destroy";
  }
}

// sda, sdb, ..., sdz, sdaa, ...
std::string ScsiDiskName(int index) {
  std::string suffix;
  for (int n = index + 1; n > 0; n = (n - 1) / 26) {
    suffix.insert(suffix.begin(), static_cast<char>('a' + (n - 1) % 26));
  }
  return "sd" + suffix;
}

std::string DeviceXml(const hvstack::v1::VmConfig& config) {
  std::string xml;
  std::set<uint32_t> controllers;
  for (const hvstack::v1::Disk& disk : config.disks()) {
    controllers.insert(disk.address().controller());
  }
  for (uint32_t controller : controllers) {
    absl::StrAppend(&xml, "    <controller type='scsi' index='", controller,
                    "' model='virtio-scsi'/>\n");
  }
  for (int i = 0; i < config.disks_size(); ++i) {
    const hvstack::v1::Disk& disk = config.disks(i);
    if (disk.format() == hvstack::v1::DISK_FORMAT_VHDX) continue;
    absl::StrAppend(
        &xml, "    <disk type='file' device='disk'>\n",
        "      <driver name='qemu' type='",
        disk.format() == hvstack::v1::DISK_FORMAT_QCOW2 ? "qcow2" : "raw",
        "'/>\n", "      <source file='", XmlEscape(disk.path()), "'/>\n",
        "      <target dev='", ScsiDiskName(i), "' bus='scsi'/>\n");
    if (disk.read_only()) absl::StrAppend(&xml, "      <readonly/>\n");
    if (!disk.serial().empty()) {
      absl::StrAppend(&xml, "      <serial>", XmlEscape(disk.serial()),
                      "</serial>\n");
    }
    absl::StrAppend(&xml, "      <address type='drive' controller='",
                    disk.address().controller(), "' bus='0' target='",
                    disk.address().target(), "' unit='", disk.address().lun(),
                    "'/>\n", "    </disk>\n");
  }
  for (const hvstack::v1::NicConfig& nic : config.nics()) {
    if (nic.bridge().empty()) continue;
    absl::StrAppend(&xml, "    <interface type='bridge'>\n");
    if (!nic.mac().empty()) {
      absl::StrAppend(&xml, "      <mac address='", XmlEscape(nic.mac()),
                      "'/>\n");
    }
    absl::StrAppend(&xml, "      <source bridge='", XmlEscape(nic.bridge()),
                    "'/>\n", "      <model type='virtio'/>\n");
    if (nic.mtu() != 0) {
      absl::StrAppend(&xml, "      <mtu size='", nic.mtu(), "'/>\n");
    }
    absl::StrAppend(&xml, "    </interface>\n");
  }
  return xml;
}

}  // namespace

std::string LibvirtDomainXml(const hvstack::v1::Vm& vm) {
  const hvstack::v1::VmConfig& config = vm.config();
  const bool tcg = config.libvirt().accelerator() ==
                   hvstack::v1::LibvirtOptions::ACCELERATOR_TCG;
  std::string xml =
      absl::StrCat("<domain type='", tcg ? "qemu" : "kvm", "'>\n",  //
                   "  <name>", XmlEscape(LibvirtDomainName(vm.name())),
                   "</name>\n", "  <uuid>", XmlEscape(vm.uuid()), "</uuid>\n",
                   "  <metadata>", LibvirtMetadataElement(vm), "</metadata>\n",
                   "  <memory unit='MiB'>", config.memory_mib(), "</memory>\n",
                   "  <vcpu>", config.vcpus(), "</vcpu>\n",
                   "  <os>\n"
                   "    <type arch='x86_64' machine='pc'>hvm</type>\n"
                   "    <kernel>",
                   XmlEscape(config.kernel_path()), "</kernel>\n");
  if (!config.initrd_path().empty()) {
    absl::StrAppend(&xml, "    <initrd>", XmlEscape(config.initrd_path()),
                    "</initrd>\n");
  }
  absl::StrAppend(
      &xml, "    <cmdline>", XmlEscape(config.cmdline()), "</cmdline>\n",
      "  </os>\n"
      "  <features><acpi/></features>\n"
      "  <clock offset='utc'/>\n"
      "  <on_poweroff>destroy</on_poweroff>\n"
      "  <on_reboot>restart</on_reboot>\n"
      "  <on_crash>",
      OnCrashAction(config.on_guest_crash()),
      "</on_crash>\n"
      "  <devices>\n"
      "    <controller type='usb' model='none'/>\n"
      "    <serial type='pty'><target port='0'/></serial>\n"
      "    <console type='pty'><target type='serial' port='0'/></console>\n"
      "    <memballoon model='none'/>\n"
      "    <panic model='isa'><address type='isa' iobase='0x505'/></panic>\n",
      DeviceXml(config),
      "  </devices>\n"
      "</domain>\n");
  return xml;
}

}  // namespace vmms
