#include "hvcore/partition.h"

#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "hvcore/boot_layout.h"
#include "hvcore/hyperv/cpuid_leaves.h"
#include "hvcore/hyperv/kvm_glue.h"
#include "hvcore/kvm_abi.h"
#include "hvcore/msr.h"
#include "hvcore/virtual_processor.h"
#include "spdlog/spdlog.h"

namespace hvcore {
namespace {

absl::Status IoctlError(absl::string_view what) {
  return absl::ErrnoToStatus(errno, what);
}

// See boot_layout.h: PC-compatible routing with the PIT on IOAPIC pin 2.
absl::Status SetPcGsiRouting(int vm) {
  std::vector<kvm_irq_routing_entry> entries;
  auto add = [&](uint32_t gsi, uint32_t chip, uint32_t pin) {
    kvm_irq_routing_entry e{};
    e.gsi = gsi;
    e.type = KVM_IRQ_ROUTING_IRQCHIP;
    e.u.irqchip.irqchip = chip;
    e.u.irqchip.pin = pin;
    entries.push_back(e);
  };
  for (uint32_t i = 0; i < 16; ++i) {
    if (i == 2) continue;
    add(i, i < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, i % 8);
  }
  for (uint32_t i = 0; i < kIoApicPins; ++i) {
    if (i == 2) continue;
    add(i, KVM_IRQCHIP_IOAPIC, i == 0 ? 2 : i);
  }
  std::vector<uint8_t> buf(sizeof(kvm_abi::IrqRoutingHeader) +
                           entries.size() * sizeof(kvm_irq_routing_entry));
  auto* header = reinterpret_cast<kvm_abi::IrqRoutingHeader*>(buf.data());
  header->nr = static_cast<uint32_t>(entries.size());
  header->flags = 0;
  std::memcpy(buf.data() + sizeof(kvm_abi::IrqRoutingHeader), entries.data(),
              entries.size() * sizeof(kvm_irq_routing_entry));
  if (::ioctl(vm, kvm_abi::kSetGsiRouting, buf.data()) < 0) {
    return IoctlError("KVM_SET_GSI_ROUTING failed");
  }
  return absl::OkStatus();
}

}  // namespace

Partition::Partition(base::ScopedFd vm_fd, const KvmSystem& kvm,
                     const PartitionOptions& options)
    : vm_fd_(std::move(vm_fd)),
      vcpu_mmap_size_(kvm.vcpu_mmap_size()),
      max_memslots_(kvm.max_memslots()),
      vcpu_count_(options.vcpu_count),
      irqchip_(options.irqchip),
      kvm_cpuid_base_(options.kvm_cpuid_base),
      hyperv_(options.hyperv),
      supported_cpuid_(kvm.supported_cpuid()),
      msr_index_list_(kvm.msr_index_list()),
      xsave_size_(kvm.CheckExtension(KVM_CAP_XSAVE) <= 0
                      ? 0
                      : std::max(4096, kvm.CheckExtension(KVM_CAP_XSAVE2))),
      has_xcrs_(kvm.CheckExtension(KVM_CAP_XCRS) > 0),
      has_debugregs_(kvm.CheckExtension(KVM_CAP_DEBUGREGS) > 0) {}

Partition::~Partition() = default;

absl::StatusOr<std::unique_ptr<Partition>> Partition::Create(
    const KvmSystem& kvm, const PartitionOptions& options) {
  if (options.vcpu_count == 0 ||
      (kvm.max_vcpus() > 0 &&
       options.vcpu_count > static_cast<uint32_t>(kvm.max_vcpus()))) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d VPs requested; this host's KVM allows 1 to %d",
                        options.vcpu_count, kvm.max_vcpus()));
  }
  if (options.vcpu_count > kMaxXApicVcpus) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%d VPs requested; at most %d are supported (APIC ids are VP indexes, "
        "and xAPIC id 0xff is the broadcast address; more needs x2APIC with "
        "extended destination ids)",
        options.vcpu_count, kMaxXApicVcpus));
  }
  if (kvm.recommended_vcpus() > 0 &&
      options.vcpu_count > static_cast<uint32_t>(kvm.recommended_vcpus())) {
    spdlog::warn(
        "partition: {} VPs exceed KVM's recommended {} (KVM_CAP_NR_VCPUS, "
        "normally the host's CPU count); the VPs will share host CPUs",
        options.vcpu_count, kvm.recommended_vcpus());
  }
  if (options.kvm_cpuid_base < 0x40000000 ||
      options.kvm_cpuid_base > 0x4000FF00 ||
      (options.kvm_cpuid_base & 0xFF) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KVM CPUID base 0x%x must be 0x40000000..0x4000ff00 in steps of 0x100 "
        "(where Linux looks for it)",
        options.kvm_cpuid_base));
  }
  int vm = ::ioctl(kvm.fd(), KVM_CREATE_VM, 0);
  if (vm < 0)
    return IoctlError(absl::StrCat(kvm.name(), ": KVM_CREATE_VM failed"));
  base::ScopedFd vm_fd(vm);
  if (::ioctl(vm, KVM_SET_TSS_ADDR,
              static_cast<unsigned long>(kKvmTssAddress)) < 0) {
    return IoctlError("KVM_SET_TSS_ADDR failed");
  }
  if (kvm.CheckExtension(KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
    uint64_t addr = kKvmIdentityMapAddress;
    if (::ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0) {
      return IoctlError("KVM_SET_IDENTITY_MAP_ADDR failed");
    }
  }
  if (kvm.has_exit_on_emulation_failure()) {
    // Ask KVM to report every emulation failure to us, with the instruction
    // bytes, instead of sometimes injecting #UD. Best effort: the fallback
    // reads the bytes from guest memory.
    kvm_enable_cap cap{};
    cap.cap = KVM_CAP_EXIT_ON_EMULATION_FAILURE;
    cap.args[0] = 1;
    (void)::ioctl(vm, KVM_ENABLE_CAP, &cap);
  }
  if (options.hyperv) {
    if (absl::Status s = EnableSyntheticMsrExits(kvm, vm); !s.ok()) return s;
  }
  std::unique_ptr<Partition> p(new Partition(std::move(vm_fd), kvm, options));
  // KVM_GET_TSC_KHZ on the VM (Linux >= 6.0); older kernels only answer it on
  // a vcpu, so CreateVp asks there when this did not work.
  int khz = ::ioctl(p->fd(), KVM_GET_TSC_KHZ, 0);
  absl::MutexLock lock(&p->mu_);
  p->tsc_khz_ = khz > 0 ? static_cast<uint32_t>(khz) : 0;
  p->BuildCpuidLocked();
  return p;
}

absl::Status Partition::EnableSyntheticMsrExits(const KvmSystem& kvm, int vm) {
  if (kvm.CheckExtension(KVM_CAP_X86_USER_SPACE_MSR) <= 0 ||
      kvm.CheckExtension(KVM_CAP_X86_MSR_FILTER) <= 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        kvm.name(),
        ": KVM cannot send MSR accesses to userspace "
        "(KVM_CAP_X86_USER_SPACE_MSR / KVM_CAP_X86_MSR_FILTER missing); the "
        "Hyper-V interface needs Linux 5.10 or later. Turn enlightenments off "
        "for this VM"));
  }
  kvm_enable_cap cap{};
  cap.cap = KVM_CAP_X86_USER_SPACE_MSR;
  cap.args[0] = hyperv::kvm::kUserSpaceMsrReasons;
  if (::ioctl(vm, KVM_ENABLE_CAP, &cap) < 0) {
    return IoctlError("KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR) failed");
  }
  std::unique_ptr<hyperv::kvm::MsrFilter> filter = hyperv::kvm::MakeMsrFilter();
  if (::ioctl(vm, KVM_X86_SET_MSR_FILTER, &filter->filter) < 0) {
    return IoctlError("KVM_X86_SET_MSR_FILTER (0x40000000-0x400001ff) failed");
  }
  return absl::OkStatus();
}

void Partition::BuildCpuidLocked() {
  guest_cpuid_ =
      BuildGuestCpuid(supported_cpuid_, {.vcpu_count = vcpu_count_,
                                         .kvm_leaves = !hyperv_,
                                         .kvm_leaf_base = kvm_cpuid_base_,
                                         .tsc_khz = tsc_khz_});
  if (!hyperv_) return;
  for (const hyperv::CpuidLeaf& leaf :
       hyperv::BuildHypervCpuid({.max_vps = vcpu_count_})) {
    guest_cpuid_.push_back(hyperv::kvm::ToKvmCpuidEntry(leaf));
  }
}

absl::Status Partition::CreateIrqchip() {
  if (!irqchip_) {
    return absl::FailedPreconditionError(
        "the partition was created without an in-kernel irqchip");
  }
  absl::MutexLock lock(&mu_);
  if (irqchip_created_) return absl::OkStatus();
  const int vm = vm_fd_.get();
  if (::ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) {
    return IoctlError("KVM_CREATE_IRQCHIP failed");
  }
  if (absl::Status s = SetPcGsiRouting(vm); !s.ok()) return s;
  // The dummy speaker makes KVM handle port 0x61 (PIT channel 2 gate and
  // output), which Linux uses to calibrate the TSC against the PIT.
  kvm_pit_config pit{};
  pit.flags = KVM_PIT_SPEAKER_DUMMY;
  if (::ioctl(vm, KVM_CREATE_PIT2, &pit) < 0) {
    return IoctlError("KVM_CREATE_PIT2 failed");
  }
  irqchip_created_ = true;
  return absl::OkStatus();
}

std::vector<kvm_cpuid_entry2> Partition::guest_cpuid() const {
  absl::MutexLock lock(&mu_);
  return guest_cpuid_;
}

uint32_t Partition::tsc_khz() const {
  absl::MutexLock lock(&mu_);
  return tsc_khz_;
}

bool Partition::KvmHasMsr(uint32_t index) const {
  return std::find(msr_index_list_.begin(), msr_index_list_.end(), index) !=
         msr_index_list_.end();
}

absl::Status Partition::SetIrqLine(uint32_t gsi, bool level) {
  if (absl::Status s = CreateIrqchip(); !s.ok()) return s;
  if (gsi >= kIoApicPins) {
    return absl::InvalidArgumentError(absl::StrCat("SetIrqLine: GSI ", gsi,
                                                   " is not an IOAPIC pin (0-",
                                                   kIoApicPins - 1, ")"));
  }
  kvm_irq_level irq{};
  irq.irq = gsi;
  irq.level = level ? 1 : 0;
  if (::ioctl(vm_fd_.get(), KVM_IRQ_LINE, &irq) < 0) {
    return IoctlError(absl::StrCat("KVM_IRQ_LINE(gsi ", gsi, ", ", level, ")"));
  }
  return absl::OkStatus();
}

absl::Status Partition::SignalMsi(const Msi& msi) {
  if (absl::Status s = CreateIrqchip(); !s.ok()) return s;
  if ((msi.address >> 20) != 0xFEE) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "SignalMsi: address 0x%x is not in the LAPIC MSI window 0xFEExxxxx",
        msi.address));
  }
  kvm_msi m{};
  m.address_lo = static_cast<uint32_t>(msi.address);
  m.address_hi = static_cast<uint32_t>(msi.address >> 32);
  m.data = msi.data;
  if (::ioctl(vm_fd_.get(), KVM_SIGNAL_MSI, &m) < 0) {
    return IoctlError(absl::StrFormat("KVM_SIGNAL_MSI(address 0x%x, data 0x%x)",
                                      msi.address, msi.data));
  }
  return absl::OkStatus();
}
absl::StatusOr<uint32_t> Partition::MapUserMemory(uint64_t gpa, uint64_t size,
                                                  void* host) {
  constexpr uint64_t kPageMask = 0xFFF;
  auto host_addr = reinterpret_cast<uint64_t>(host);
  if (size == 0 || ((gpa | size | host_addr) & kPageMask) != 0 ||
      gpa + size < gpa) {
    return absl::InvalidArgumentError(
        absl::StrFormat("MapUserMemory: gpa=0x%x size=0x%x host=%p must be "
                        "non-empty and page aligned",
                        gpa, size, host));
  }
  absl::MutexLock lock(&mu_);
  for (const MemoryRegion& r : regions_) {
    if (gpa < r.gpa + r.size && r.gpa < gpa + size) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "MapUserMemory: [0x%x, 0x%x) overlaps mapped [0x%x, 0x%x)", gpa,
          gpa + size, r.gpa, r.gpa + r.size));
    }
  }
  if (static_cast<int>(regions_.size()) >= max_memslots_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "MapUserMemory: all ", max_memslots_, " KVM memory slots are used"));
  }
  kvm_userspace_memory_region region{};
  region.slot = static_cast<uint32_t>(regions_.size());
  region.guest_phys_addr = gpa;
  region.memory_size = size;
  region.userspace_addr = host_addr;
  if (::ioctl(vm_fd_.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    return IoctlError(absl::StrFormat(
        "KVM_SET_USER_MEMORY_REGION(slot %d, gpa 0x%x, 0x%x bytes)",
        region.slot, gpa, size));
  }
  regions_.push_back({gpa, size, static_cast<uint8_t*>(host)});
  return region.slot;
}

absl::Status Partition::ReadPhysical(uint64_t gpa,
                                     std::span<uint8_t> out) const {
  absl::MutexLock lock(&mu_);
  for (const MemoryRegion& r : regions_) {
    // Overflow-safe: gpa >= r.gpa, then compare remaining lengths.
    if (gpa >= r.gpa && gpa - r.gpa < r.size &&
        out.size() <= r.size - (gpa - r.gpa)) {
      std::memcpy(out.data(), r.host + (gpa - r.gpa), out.size());
      return absl::OkStatus();
    }
  }
  return absl::OutOfRangeError(absl::StrFormat(
      "guest-physical [0x%x, +%d) is not RAM", gpa, out.size()));
}

absl::StatusOr<std::unique_ptr<VirtualProcessor>> Partition::CreateVp(
    uint32_t index) {
  if (index >= vcpu_count_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "VP ", index, ": the partition was created for ", vcpu_count_, " VPs"));
  }
  // The irqchip must exist before the first vcpu: KVM gives a vcpu an
  // in-kernel LAPIC only if it does.
  if (irqchip_) {
    if (absl::Status s = CreateIrqchip(); !s.ok()) return s;
  }
  absl::StatusOr<std::unique_ptr<VirtualProcessor>> vp =
      VirtualProcessor::Create(this, index);
  if (!vp.ok()) return vp.status();
  std::vector<kvm_cpuid_entry2> cpuid;
  {
    absl::MutexLock lock(&mu_);
    if (tsc_khz_ == 0) {
      int khz = ::ioctl((*vp)->fd(), KVM_GET_TSC_KHZ, 0);
      if (khz > 0) {
        tsc_khz_ = static_cast<uint32_t>(khz);
        BuildCpuidLocked();
      }
    }
    cpuid = guest_cpuid_;
  }
  // Same CPUID on every VP except the APIC ids.
  SetCpuidApicId(cpuid, index);
  if (absl::Status s = (*vp)->SetCpuid(cpuid); !s.ok()) return s;
  if (index == 0) {
    // kvm_pvm rewrites leaf 1 ECX and re-adds leaf 0xD at KVM_SET_CPUID2, so
    // what we hide may come back; the guest then uses instructions (xsave,
    // xrstor) that the same host's emulator rejects. Say so once per
    // partition, so a later emulation failure has an explanation in the log.
    if (absl::StatusOr<std::vector<kvm_cpuid_entry2>> kept = (*vp)->GetCpuid();
        kept.ok()) {
      std::vector<std::string> back = HiddenFeaturesTheHostKept(*kept);
      if (!back.empty()) {
        spdlog::warn(
            "partition: this host's KVM overrode the CPUID filter and shows "
            "the guest {}; a guest that uses them may stop with an emulation "
            "failure (Linux: boot with 'noxsave')",
            absl::StrJoin(back, ", "));
      }
      host_kept_hidden_features_ = std::move(back);
    }
  }
  if (absl::Status s = (*vp)->SetMsrs(InitialMsrs(cpuid)); !s.ok()) return s;
  return vp;
}

std::vector<kvm_msr_entry> Partition::InitialMsrs(
    std::span<const kvm_cpuid_entry2> cpuid) const {
  std::vector<kvm_msr_entry> msrs;
  auto add = [&](uint32_t index, uint64_t value) {
    kvm_msr_entry e{};
    e.index = index;
    e.data = value;
    msrs.push_back(e);
  };
  // MSRs KVM lists in KVM_GET_MSR_INDEX_LIST; skipped (debug log) otherwise.
  const struct {
    uint32_t index;
    uint64_t value;
    const char* name;
  } listed[] = {
      {kMsrIa32Tsc, 0, "IA32_TSC"},
      {kMsrIa32MiscEnable, kMiscEnableFastStrings, "IA32_MISC_ENABLE"},
      {kMsrIa32Pat, kPatPowerOnDefault, "IA32_PAT"},
  };
  for (const auto& m : listed) {
    if (KvmHasMsr(m.index)) {
      add(m.index, m.value);
    } else {
      spdlog::debug("partition: KVM does not list {} (0x{:x}); not set", m.name,
                    m.index);
    }
  }
  // MTRRs (KVM emulates them whenever CPUID says MTRR, without listing them):
  // default type write-back, enabled, fixed ranges off; variable range 0 makes
  // the MMIO hole [3 GiB, 4 GiB) uncacheable, as firmware would.
  bool has_mtrr = false;
  uint32_t phys_bits = 36;
  for (const kvm_cpuid_entry2& e : cpuid) {
    if (e.function == 0x1) has_mtrr = (e.edx >> 12) & 1;
    if (e.function == 0x80000008 && (e.eax & 0xFF) != 0)
      phys_bits = e.eax & 0xFF;
  }
  if (has_mtrr) {
    const uint64_t phys_mask =
        (phys_bits >= 64) ? ~0ull : (1ull << phys_bits) - 1;
    add(kMsrMtrrDefType, kMtrrDefTypeEnable | kMtrrTypeWriteBack);
    add(kMsrMtrrPhysBase0, kMmioHoleStart | kMtrrTypeUncacheable);
    add(kMsrMtrrPhysMask0,
        (~(kMmioHoleSize - 1) & phys_mask) | kMtrrPhysMaskValid);
  }
  return msrs;
}

}  // namespace hvcore
