#include "cli/stats_output.h"

#include <algorithm>
#include <array>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/output.h"

namespace vmctl {
namespace {

std::string Seconds(int64_t ns) {
  return absl::StrFormat("%.3fs", static_cast<double>(ns) / 1e9);
}

std::string Uptime(const google::protobuf::Duration& d) {
  return absl::StrFormat("%.1fs", static_cast<double>(d.seconds()) +
                                      static_cast<double>(d.nanos()) / 1e9);
}

std::string Mib(uint64_t bytes) {
  return absl::StrFormat("%.1fMiB", static_cast<double>(bytes) / (1 << 20));
}

uint64_t TotalExits(const hvstack::v1::VmStats& s) {
  uint64_t total = 0;
  for (const auto& vp : s.vps()) total += vp.total_exits();
  return total;
}

}  // namespace

std::string FormatStats(const hvstack::v1::VmStats& s) {
  std::string out;
  absl::StrAppend(
      &out, "name: ", s.name(), "\n", "state: ", StateText(s.state()), "\n",
      "uptime: ", Uptime(s.uptime()), "\n", "worker_pid: ", s.worker_pid(),
      "\n", "worker_cpu: ", Seconds(s.worker_cpu_time_ns()), "\n",
      "worker_rss: ", Mib(s.worker_rss_bytes()), "\n",
      "console_bytes: ", s.console_bytes(), "\n",
      "reboot_count: ", s.reboot_count(), "\n",
      "restart_count: ", s.restart_count(), "\n");
  if (!s.worker_error().empty())
    absl::StrAppend(&out, "worker_error: ", s.worker_error(), "\n");
  for (const hvstack::v1::VpStats& vp : s.vps()) {
    absl::StrAppend(&out, "vp", vp.index(), ": cpu ", Seconds(vp.cpu_time_ns()),
                    ", exits ", vp.total_exits());
    // Sorted: the proto map has no order.
    std::map<std::string, uint64_t> by_reason(vp.exits_by_reason().begin(),
                                              vp.exits_by_reason().end());
    for (const auto& [reason, n] : by_reason)
      absl::StrAppend(&out, " ", reason, "=", n);
    absl::StrAppend(&out, "\n");
  }
  for (const hvstack::v1::NicStats& nic : s.nics()) {
    absl::StrAppend(&out, "nic", nic.index(), ": ", nic.mac(), " ",
                    nic.host_interface(), " from_guest ",
                    nic.from_guest_packets(), " packets ",
                    nic.from_guest_bytes(), " bytes ", nic.from_guest_drops(),
                    " drops, to_guest ", nic.to_guest_packets(), " packets ",
                    nic.to_guest_bytes(), " bytes ", nic.to_guest_drops(),
                    " drops, link ", nic.link_up() ? "up" : "down",
                    nic.guest_ready() ? ", guest ready" : ", guest not ready");
    if (nic.protocol_errors() != 0)
      absl::StrAppend(&out, ", protocol errors ", nic.protocol_errors());
    // Sorted: the proto map has no order.
    std::map<std::string, uint64_t> drops(nic.drops_by_reason().begin(),
                                          nic.drops_by_reason().end());
    for (const auto& [reason, n] : drops)
      absl::StrAppend(&out, " ", reason, "=", n);
    absl::StrAppend(&out, "\n");
  }
  return out;
}

std::string FormatStatsTable(const hvstack::v1::ListVmStatsResponse& all) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "STATE", "UPTIME", "CPU", "RSS", "EXITS", "CONSOLE"}};
  for (const hvstack::v1::VmStats& s : all.stats()) {
    uint64_t vp_cpu = 0;
    for (const auto& vp : s.vps()) vp_cpu += vp.cpu_time_ns();
    rows.push_back({s.name(), StateText(s.state()), Uptime(s.uptime()),
                    Seconds(static_cast<int64_t>(vp_cpu)),
                    Mib(s.worker_rss_bytes()), absl::StrCat(TotalExits(s)),
                    absl::StrCat(s.console_bytes())});
  }
  return FormatColumns(rows);
}

std::string FormatHostInfo(const hvstack::v1::HostInfo& h) {
  std::string out;
  absl::StrAppend(&out, "host_kernel: ", h.host_kernel(), "\n",
                  "host_cpus: ", h.host_cpus(), "\n",
                  "host_memory: ", Mib(h.host_memory_bytes()), "\n",
                  "kvm_module: ", h.kvm_module().empty() ? "-" : h.kvm_module(),
                  "\n", "kvm_api_version: ", h.kvm_api_version(), "\n",
                  "kvm_max_vcpus: ", h.max_vcpus(), "\n",
                  "kvm_recommended_vcpus: ", h.recommended_vcpus(), "\n",
                  "kvm_max_memory_slots: ", h.max_memory_slots(), "\n",
                  "vm_max_vcpus: ", h.vm_max_vcpus(), "\n",
                  "vm_max_memory: ", h.vm_max_memory_mib(), "MiB\n");
  std::map<std::string, int64_t> caps(h.kvm_capabilities().begin(),
                                      h.kvm_capabilities().end());
  for (const auto& [name, value] : caps)
    absl::StrAppend(&out, "cap_", name, ": ", value, "\n");
  if (!h.kvm_error().empty())
    absl::StrAppend(&out, "kvm_error: ", h.kvm_error(), "\n");
  if (h.libvirt_uri().empty()) {
    absl::StrAppend(&out, "libvirt: not enabled (vmms --libvirt-uri)\n");
  } else {
    absl::StrAppend(&out, "libvirt_uri: ", h.libvirt_uri(), "\n",
                    "libvirt_connected: ", h.libvirt_connected() ? "yes" : "no",
                    "\n");
    if (!h.libvirt_version().empty())
      absl::StrAppend(&out, "libvirt_version: ", h.libvirt_version(), "\n");
    if (!h.libvirt_error().empty())
      absl::StrAppend(&out, "libvirt_error: ", h.libvirt_error(), "\n");
  }
  return out;
}

}  // namespace vmctl
