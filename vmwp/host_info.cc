#include "vmwp/host_info.h"

#include <unistd.h>

#include <memory>

#include "hvcore/kvm_abi.h"
#include "hvcore/kvm_system.h"

namespace vmwp {
namespace {

struct NamedCap {
  const char* name;
  int cap;
};

// What an operator (or an orchestrator placing VMs) wants to see; 0 means
// absent.
constexpr NamedCap kCaps[] = {
    {"irqchip", KVM_CAP_IRQCHIP},
    {"user_memory", KVM_CAP_USER_MEMORY},
    {"set_tss_addr", KVM_CAP_SET_TSS_ADDR},
    {"ext_cpuid", KVM_CAP_EXT_CPUID},
    {"nr_vcpus", KVM_CAP_NR_VCPUS},
    {"max_vcpus", KVM_CAP_MAX_VCPUS},
    {"max_vcpu_id", KVM_CAP_MAX_VCPU_ID},
    {"nr_memslots", KVM_CAP_NR_MEMSLOTS},
    {"pit2", KVM_CAP_PIT2},
    {"irqfd", KVM_CAP_IRQFD},
    {"ioeventfd", KVM_CAP_IOEVENTFD},
    {"signal_msi", KVM_CAP_SIGNAL_MSI},
    {"immediate_exit", KVM_CAP_IMMEDIATE_EXIT},
    {"x2apic_api", KVM_CAP_X2APIC_API},
    {"split_irqchip", KVM_CAP_SPLIT_IRQCHIP},
    {"x86_user_space_msr", KVM_CAP_X86_USER_SPACE_MSR},
    {"x86_msr_filter", KVM_CAP_X86_MSR_FILTER},
    {"exit_on_emulation_failure", KVM_CAP_EXIT_ON_EMULATION_FAILURE},
    {"tsc_control", KVM_CAP_TSC_CONTROL},
    {"kvmclock_ctrl", KVM_CAP_KVMCLOCK_CTRL},
    {"xsave", KVM_CAP_XSAVE},
    {"hyperv", KVM_CAP_HYPERV},
    {"hyperv_synic", KVM_CAP_HYPERV_SYNIC},
    {"hyperv_cpuid", KVM_CAP_HYPERV_CPUID},
    {"dirty_log_ring", KVM_CAP_DIRTY_LOG_RING},
};

std::string LoadedKvmModule() {
  for (const char* module : {"kvm_intel", "kvm_amd", "kvm_pvm"}) {
    std::string path = std::string("/sys/module/") + module;
    if (::access(path.c_str(), F_OK) == 0) return module;
  }
  return "";
}

}  // namespace

absl::StatusOr<hvstack::internal::HostKvmInfo> ProbeHostKvm(
    const std::string& kvm_device) {
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open(kvm_device);
  if (!kvm.ok()) return kvm.status();
  hvstack::internal::HostKvmInfo info;
  // Open() refuses any other API version.
  info.set_api_version(KVM_API_VERSION);
  info.set_max_vcpus(static_cast<uint32_t>((*kvm)->max_vcpus()));
  info.set_recommended_vcpus(
      static_cast<uint32_t>((*kvm)->recommended_vcpus()));
  info.set_max_memory_slots(static_cast<uint32_t>((*kvm)->max_memslots()));
  for (const NamedCap& c : kCaps)
    (*info.mutable_capabilities())[c.name] = (*kvm)->CheckExtension(c.cap);
  info.set_module(LoadedKvmModule());
  return info;
}

}  // namespace vmwp
