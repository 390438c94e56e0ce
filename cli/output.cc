#include "cli/output.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <array>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/nic_commands.h"

namespace vmctl {

std::string StateText(hvstack::v1::VmState state) {
  std::string name = hvstack::v1::VmState_Name(state);
  return absl::AsciiStrToLower(absl::StripPrefix(name, "VM_STATE_"));
}

std::string FormatColumns(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size());
    for (size_t i = 0; i < row.size(); ++i)
      widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      // The last column is not padded: no trailing blanks.
      if (i + 1 < row.size())
        line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    absl::StrAppend(&out, absl::StripTrailingAsciiWhitespace(line), "\n");
  }
  return out;
}

std::string FormatTable(const hvstack::v1::ListVmsResponse& vms) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "STATE", "CPUS", "MEMORY", "UUID", "REASON"}};
  for (const hvstack::v1::Vm& vm : vms.vms()) {
    rows.push_back({vm.name(), StateText(vm.state()),
                    absl::StrCat(vm.config().vcpus()),
                    absl::StrCat(vm.config().memory_mib(), "MiB"), vm.uuid(),
                    vm.state_reason()});
  }
  return FormatColumns(rows);
}

std::string FormatIntegration(const hvstack::v1::GuestIntegration& gi) {
  using hvstack::v1::GuestIntegration;
  if (!gi.error().empty())
    return absl::StrCat("heartbeat: unknown (", gi.error(), ")\n");
  if (!gi.enlightened()) return "heartbeat: - (not enlightened)\n";
  std::string out;
  switch (gi.heartbeat()) {
    case GuestIntegration::HEARTBEAT_OK:
      absl::StrAppend(&out, "heartbeat: OK (seq ", gi.heartbeat_sequence(),
                      ")\n");
      break;
    case GuestIntegration::HEARTBEAT_LOST:
      absl::StrAppend(
          &out, "heartbeat: LOST (last seq ", gi.heartbeat_sequence(), " at ",
          google::protobuf::util::TimeUtil::ToString(gi.last_heartbeat_time()),
          ")\n");
      break;
    default:
      absl::StrAppend(&out, "heartbeat: NO_CONTACT\n");
      break;
  }
  absl::StrAppend(
      &out, "vmbus: ",
      gi.vmbus_version().empty() ? "not connected" : gi.vmbus_version(), "\n");
  absl::StrAppend(
      &out, "integration_services: ",
      gi.channels().empty() ? "-" : absl::StrJoin(gi.channels(), " "), "\n");
  // How far the guest got with each component: a Linux guest opens KVP in
  // the kernel but answers only once hv_kvp_daemon runs.
  for (const hvstack::v1::IntegrationComponent& c : gi.components()) {
    absl::StrAppend(&out, "  ", c.name(), ": ",
                    c.negotiated() ? "running"
                    : c.opened()   ? "opened, not answering"
                    : c.offered()  ? "offered, not opened"
                                   : "not offered",
                    "\n");
  }
  if (!gi.os_name().empty())
    absl::StrAppend(&out, "guest_os: ", gi.os_name(), "\n");
  if (!gi.host_name().empty())
    absl::StrAppend(&out, "guest_host_name: ", gi.host_name(), "\n");
  return out;
}

namespace {

std::string DiskFormatText(hvstack::v1::DiskFormat format) {
  switch (format) {
    case hvstack::v1::DISK_FORMAT_RAW:
      return "raw";
    case hvstack::v1::DISK_FORMAT_QCOW2:
      return "qcow2";
    case hvstack::v1::DISK_FORMAT_VHDX:
      return "vhdx";
    default:
      return "?";
  }
}

std::string AddressText(const hvstack::v1::ScsiAddress& a) {
  return absl::StrCat(a.controller(), ":", a.target(), ":", a.lun());
}

// `show`: one "disk: ..." line per disk.
std::string DiskLines(const hvstack::v1::VmConfig& config) {
  if (config.disks().empty()) return "disks: -\n";
  std::string out;
  for (const hvstack::v1::Disk& d : config.disks()) {
    absl::StrAppend(&out, "disk: ", AddressText(d.address()), " ",
                    DiskFormatText(d.format()), " ",
                    d.read_only() ? "read-only" : "read-write", " ", d.path(),
                    " (serial ", d.serial(), ")\n");
  }
  return out;
}

}  // namespace

// "DISABLED (developer switch)" for a vmms --no-sandbox worker, else the
// VM's own identity ("uid 1500000000, gid 1500000000, ...").
std::string SandboxText(const hvstack::v1::VmSandbox& sandbox) {
  if (!sandbox.enabled()) return "DISABLED (developer switch)";
  if (sandbox.uid() == 0) return "enabled (uid assigned at first start)";
  return absl::StrCat("uid ", sandbox.uid(), ", gid ", sandbox.gid(),
                      ", namespaces, seccomp, cgroup");
}

std::string GuestCrashPolicyText(hvstack::v1::GuestCrashPolicy policy) {
  switch (policy) {
    case hvstack::v1::GUEST_CRASH_POLICY_RESTART:
      return "restart";
    case hvstack::v1::GUEST_CRASH_POLICY_PRESERVE:
      return "preserve";
    default:
      return "stop";
  }
}

// The guest's last crash report: when, where, what it said.
std::string FormatGuestCrash(const hvstack::v1::GuestCrash& crash) {
  using google::protobuf::util::TimeUtil;
  std::string out = absl::StrCat(
      "last_guest_crash: ", TimeUtil::ToString(crash.time()), " vp", crash.vp(),
      ": ", crash.summary(), "\n", "  parameters:");
  for (uint64_t p : crash.parameters())
    absl::StrAppend(&out, absl::StrFormat(" 0x%x", p));
  absl::StrAppend(&out, "\n");
  if (crash.suppressed_reports() > 0) {
    absl::StrAppend(
        &out, "  further reports ignored: ", crash.suppressed_reports(), "\n");
  }
  if (!crash.message().empty()) {
    absl::StrAppend(&out, "  message:\n");
    for (absl::string_view line : absl::StrSplit(crash.message(), '\n')) {
      if (!line.empty()) absl::StrAppend(&out, "    ", line, "\n");
    }
  }
  return out;
}

std::string BackendText(const hvstack::v1::Vm& vm) {
  if (vm.config().backend() != hvstack::v1::BACKEND_LIBVIRT) return "hvstack";
  if (vm.libvirt().adopted()) return "libvirt (adopted)";
  return absl::StrCat("libvirt (",
                      vm.config().libvirt().accelerator() ==
                              hvstack::v1::LibvirtOptions::ACCELERATOR_TCG
                          ? "tcg"
                          : "kvm",
                      ")");
}

// The libvirt backend's lines of `vmctl show`.
std::string LibvirtText(const hvstack::v1::LibvirtDomain& d) {
  std::string out = absl::StrCat(
      "libvirt_domain: ", d.domain_name().empty() ? "-" : d.domain_name(),
      d.adopted() ? " (adopted: its XML is libvirt's)" : "", "\n",
      "libvirt_connected: ", d.connected() ? "yes" : "no",
      d.uri().empty() ? std::string() : absl::StrCat(" (", d.uri(), ")"), "\n");
  if (!d.domain_state().empty())
    absl::StrAppend(&out, "libvirt_state: ", d.domain_state(), "\n");
  if (!d.error().empty())
    absl::StrAppend(&out, "libvirt_error: ", d.error(), "\n");
  return out;
}

// Issue 14: a Saved (or Restoring) VM's saved state.
std::string FormatSavedState(const hvstack::v1::SavedStateInfo& saved) {
  return absl::StrCat(
      "saved_state:\n", "  save_time: ",
      google::protobuf::util::TimeUtil::ToString(saved.save_time()), "\n",
      "  saved_from: ", StateText(saved.saved_from()), "\n",
      "  state_file: ", saved.state_file(), " (", saved.state_bytes(),
      " bytes)\n", "  memory_file: ", saved.memory_file(), " (",
      saved.memory_pages_written(), " of ", saved.memory_pages_total(),
      " pages written)\n",
      "  guest_paused_for: ", saved.save_duration_us() / 1000, " ms\n");
}

std::string FormatVm(const hvstack::v1::Vm& vm) {
  using google::protobuf::util::TimeUtil;
  auto time = [](const google::protobuf::Timestamp& t) {
    return t.seconds() == 0 && t.nanos() == 0 ? std::string("-")
                                              : TimeUtil::ToString(t);
  };
  return absl::StrCat(
      "name: ", vm.name(), "\n",                      //
      "uuid: ", vm.uuid(), "\n",                      //
      "state: ", StateText(vm.state()), "\n",         //
      "state_reason: ", vm.state_reason(), "\n",      //
      "cpus: ", vm.config().vcpus(), "\n",            //
      "memory: ", vm.config().memory_mib(), "MiB\n",  //
      "kernel: ", vm.config().kernel_path(), "\n",    //
      "cmdline: ", vm.config().cmdline(), "\n",       //
      "initrd: ", vm.config().initrd_path(), "\n",    //
      "enlightenments: ", vm.config().disable_enlightenments() ? "off" : "on",
      "\n",                                       //
      "reboot_count: ", vm.reboot_count(), "\n",  //
      "autostart: ", vm.config().autostart() ? "on" : "off", "\n",
      "restart_policy: ",
      vm.config().restart_policy() == hvstack::v1::RESTART_POLICY_ON_FAILURE
          ? "on-failure"
          : (vm.config().restart_policy() == hvstack::v1::RESTART_POLICY_ALWAYS
                 ? "always"
                 : "never"),
      "\n", "restart_count: ", vm.restart_count(), "\n",
      "on_guest_crash: ", GuestCrashPolicyText(vm.config().on_guest_crash()),
      "\n", "worker_pid: ", vm.worker_pid(), "\n",  //
      "backend: ", BackendText(vm), "\n",           //
      vm.config().backend() == hvstack::v1::BACKEND_LIBVIRT
          ? LibvirtText(vm.libvirt())
          : absl::StrCat("sandbox: ", SandboxText(vm.sandbox()), "\n"),
      "create_time: ", time(vm.create_time()), "\n",  //
      "update_time: ", time(vm.update_time()), "\n",  //
      "state_change_time: ", time(vm.state_change_time()), "\n",
      DiskLines(vm.config()), FormatNicLines(vm),
      vm.has_integration() ? FormatIntegration(vm.integration()) : "",
      vm.has_last_guest_crash() ? FormatGuestCrash(vm.last_guest_crash()) : "",
      vm.has_saved_state() ? FormatSavedState(vm.saved_state()) : "");
}

std::string FormatDisks(const hvstack::v1::Vm& vm) {
  if (vm.config().disks().empty())
    return absl::StrCat("VM '", vm.name(), "' has no disks\n");
  using Row = std::array<std::string, 5>;
  std::vector<Row> rows = {{"ADDRESS", "FORMAT", "MODE", "SERIAL", "PATH"}};
  for (const hvstack::v1::Disk& d : vm.config().disks()) {
    rows.push_back({AddressText(d.address()), DiskFormatText(d.format()),
                    d.read_only() ? "ro" : "rw", d.serial(), d.path()});
  }
  std::array<size_t, 5> widths{};
  for (const Row& row : rows) {
    for (size_t i = 0; i < row.size(); ++i)
      widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const Row& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size())
        line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string FormatKvpItems(const hvstack::v1::ListKvpResponse& items) {
  std::string out;
  for (const hvstack::v1::KvpItem& item : items.items())
    absl::StrAppend(&out, item.key(), "=", item.value(), "\n");
  return out;
}

namespace {

constexpr char kEventLine[] = "%-8s %-27s %-20s %-13s %-9s %s";

std::string EventKindText(hvstack::v1::VmEvent::Kind kind) {
  std::string name = hvstack::v1::VmEvent::Kind_Name(kind);
  return absl::AsciiStrToLower(absl::StripPrefix(name, "KIND_"));
}

}  // namespace

std::string EventTableHeader() {
  return std::string(absl::StripTrailingAsciiWhitespace(absl::StrFormat(
             kEventLine, "SEQ", "TIME", "VM", "KIND", "STATE", "REASON"))) +
         "\n";
}

std::string FormatEventLine(const hvstack::v1::VmEvent& event) {
  using google::protobuf::util::TimeUtil;
  return std::string(absl::StripTrailingAsciiWhitespace(absl::StrFormat(
             kEventLine, absl::StrCat(event.sequence()),
             TimeUtil::ToString(event.time()), event.vm_name(),
             EventKindText(event.kind()), StateText(event.state()),
             // Who asked, when a client did.
             event.peer().empty()
                 ? event.reason()
                 : absl::StrCat(event.reason(), " [by ", event.peer(), "]")))) +
         "\n";
}

std::string FormatJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json + "\n";
}

}  // namespace vmctl
