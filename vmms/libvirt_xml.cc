#include "vmms/libvirt_xml.h"

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
      "  <on_crash>destroy</on_crash>\n"
      "  <devices>\n"
      "    <controller type='usb' model='none'/>\n"
      "    <serial type='pty'><target port='0'/></serial>\n"
      "    <console type='pty'><target type='serial' port='0'/></console>\n"
      "    <memballoon model='none'/>\n"
      "  </devices>\n"
      "</domain>\n");
  return xml;
}

}  // namespace vmms
