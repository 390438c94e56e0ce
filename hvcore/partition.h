#ifndef HVSTACK_HVCORE_PARTITION_H_
#define HVSTACK_HVCORE_PARTITION_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/scoped_fd.h"
#include "hvcore/cpuid.h"
#include "hvcore/kvm_system.h"
#include "hvcore/saved_state.pb.h"

namespace hvcore {

class VirtualProcessor;

// APIC id = VP index, and xAPIC id 0xFF is the broadcast address.
inline constexpr uint32_t kMaxXApicVcpus = 255;

struct PartitionOptions {
  // How many VPs the partition will have: CreateVp(index) needs index <
  // vcpu_count, and the CPUID topology describes this many CPUs. Must not
  // exceed KVM_CAP_MAX_VCPUS or kMaxXApicVcpus; above KVM_CAP_NR_VCPUS (the
  // recommended limit, normally the host's CPU count) a warning is logged.
  uint32_t vcpu_count = 1;
  // KVM's in-kernel PIC + IOAPIC + LAPICs (KVM_CREATE_IRQCHIP) and PIT
  // (KVM_CREATE_PIT2 with the dummy speaker port 0x61), created by the first
  // CreateVp (or CreateIrqchip / SetIrqLine / SignalMsi), so that RAM can be
  // mapped first: on this host a memory slot added after the PIT exists costs
  // ~7 ms instead of ~0.02 ms. With it, HLT blocks in the kernel and
  // application processors wait for INIT/SIPI; without it (hvcore's own
  // tests), HLT exits as Halt.
  bool irqchip = true;
  // Where KVM's paravirtual CPUID leaves go (see cpuid.h). Unused with
  // `hyperv`.
  uint32_t kvm_cpuid_base = kDefaultKvmCpuidBase;
  // The Hyper-V synthetic interface (hvcore/hyperv): CPUID 0x40000000-
  // 0x4000000A replaces KVM's paravirtual leaves entirely (Linux would
  // otherwise pick KVM, see hvcore/hyperv/README.md), and RDMSR/WRMSR of
  // 0x40000000-0x400001FF exit to userspace (VirtualProcessor::Run returns
  // MsrRead / MsrWrite) through KVM's MSR filter, set up here at creation so
  // that no VM ioctl is needed once the worker is sandboxed.
  // FailedPrecondition if KVM lacks KVM_CAP_X86_USER_SPACE_MSR or
  // KVM_CAP_X86_MSR_FILTER.
  bool hyperv = false;
};

// MSI address/data as the LAPIC sees them (Intel SDM 11.11).
struct Msi {
  uint64_t address;  // 0xFEExxxxx: destination APIC id in bits 19:12
  uint32_t data;     // vector in bits 7:0, delivery mode 10:8, trigger 15
};

// A child partition: one KVM VM. Owns the VM fd; does NOT own guest memory
// (vid::GuestMemory does) -- it only records which host ranges back which
// guest-physical ranges, so that it can read guest memory itself when it must
// (e.g. the bytes of an instruction KVM failed to emulate).
class Partition {
 public:
  // Creates the VM and sets the TSS and identity-map addresses (kKvmTssAddress,
  // kKvmIdentityMapAddress). Copies what it needs from `kvm`; `kvm` may be
  // destroyed afterwards.
  static absl::StatusOr<std::unique_ptr<Partition>> Create(
      const KvmSystem& kvm, const PartitionOptions& options = {});

  Partition(const Partition&) = delete;
  Partition& operator=(const Partition&) = delete;
  ~Partition();

  int fd() const { return vm_fd_.get(); }

  // KVM_SET_USER_MEMORY_REGION. `host` must stay mapped for the partition's
  // lifetime; gpa, size and host must be page aligned. Regions may not overlap.
  // Returns the slot used.
  absl::StatusOr<uint32_t> MapUserMemory(uint64_t gpa, uint64_t size,
                                         void* host);

  // Copies guest-physical memory through the recorded user-memory regions.
  // Fails (without partial output guarantees) if any byte is outside them. For
  // hvcore's own diagnostics; the worker uses vid::GuestMemory.
  absl::Status ReadPhysical(uint64_t gpa, std::span<uint8_t> out) const;

  // Creates VP `index` (its vcpu id and APIC id; index < vcpu_count), with
  // CPUID from guest_cpuid() (per-VP APIC ids) and the initial MSRs (see
  // VirtualProcessor::SetInitialMsrs). With the irqchip, VP 0 is the bootstrap
  // processor and the others start in KVM_MP_STATE_UNINITIALIZED: their
  // KVM_RUN blocks in the kernel until the guest sends INIT/SIPI. The
  // partition must outlive the VP.
  absl::StatusOr<std::unique_ptr<VirtualProcessor>> CreateVp(uint32_t index);

  // The CPUID table given to every VP (APIC-id fields are VP 0's): see
  // BuildGuestCpuid in cpuid.h.
  std::vector<kvm_cpuid_entry2> guest_cpuid() const;

  // ---- Interrupts (need options.irqchip). Thread-safe: KVM serializes these
  // itself, so device threads and VP threads may call them concurrently.

  // Creates the irqchip, GSI routing and PIT now if they do not exist yet
  // (idempotent; CreateVp calls it). Map RAM before: see
  // PartitionOptions::irqchip.
  absl::Status CreateIrqchip();

  // KVM_IRQ_LINE: drives GSI `gsi` (0-23: IOAPIC pins; 0-15 also reach the
  // PIC) to `level`. An edge-triggered source raises then lowers it.
  absl::Status SetIrqLine(uint32_t gsi, bool level);
  // KVM_SIGNAL_MSI: delivers one message-signalled interrupt. OK also when KVM
  // dropped it because the guest cannot take it (e.g. its LAPIC is still
  // software-disabled), as real hardware would.
  absl::Status SignalMsi(const Msi& msi);

  // ---- Save and restore (issue 14).

  // The partition-wide state KVM keeps: PIC/IOAPIC (KVM_GET_IRQCHIP), PIT
  // (KVM_GET_PIT2), kvmclock (KVM_GET_CLOCK), the TSC frequency, the VP count
  // and `vp0_cpuid` (what VP 0 runs with, VirtualProcessor::GetCpuid). The
  // VPs' own state is added by the caller (VirtualProcessor::SaveState).
  // Needs the irqchip. Any thread; the VPs should be out of KVM_RUN.
  absl::StatusOr<hvstack::saved::PartitionState> SaveState(
      std::span<const kvm_cpuid_entry2> vp0_cpuid) const;
  // Whether `saved` can be restored into this partition, whose VP 0 runs
  // with `vp0_cpuid`: state format, VP count, TSC frequency and every CPUID
  // leaf. FailedPrecondition naming the first field that differs ("CPUID
  // leaf 0x7 index 0 EBX: saved 0x..., this host 0x...").
  absl::Status CheckCompatible(
      const hvstack::saved::PartitionState& saved,
      std::span<const kvm_cpuid_entry2> vp0_cpuid) const;
  // Puts the irqchip, PIT and kvmclock back (not the VPs). Before the VPs
  // run.
  absl::Status RestoreState(const hvstack::saved::PartitionState& saved);
  // The format PartitionState.version this code writes and reads.
  static constexpr uint32_t kStateVersion = 1;

  bool has_irqchip() const { return irqchip_; }
  bool hyperv() const { return hyperv_; }
  uint32_t vcpu_count() const { return vcpu_count_; }
  // KVM_GET_TSC_KHZ (0 if KVM could not say).
  uint32_t tsc_khz() const;
  size_t vcpu_mmap_size() const { return vcpu_mmap_size_; }
  // From KVM_GET_MSR_INDEX_LIST.
  bool KvmHasMsr(uint32_t index) const;
  const std::vector<uint32_t>& msr_index_list() const {
    return msr_index_list_;
  }
  int xsave_size() const { return xsave_size_; }
  bool has_xcrs() const { return has_xcrs_; }
  bool has_debugregs() const { return has_debugregs_; }
  // Features hvstack hides that KVM nevertheless kept in VP 0's CPUID (see
  // HiddenFeaturesTheHostKept; kvm_pvm: XSAVE, AVX, leaf 0xD ...). Set by
  // CreateVp(0).
  const std::vector<std::string>& host_kept_hidden_features() const {
    return host_kept_hidden_features_;
  }

 private:
  struct MemoryRegion {
    uint64_t gpa;
    uint64_t size;
    uint8_t* host;
  };

  Partition(base::ScopedFd vm_fd, const KvmSystem& kvm,
            const PartitionOptions& options);
  // IA32_TSC = 0, IA32_MISC_ENABLE fast strings, IA32_PAT power-on value (each
  // if KVM lists it), MTRRs (default WB, MMIO hole UC) if CPUID has MTRR.
  std::vector<kvm_msr_entry> InitialMsrs(
      std::span<const kvm_cpuid_entry2> cpuid) const;
  // guest_cpuid_ from supported_cpuid_, the options and tsc_khz_.
  void BuildCpuidLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // KVM_CAP_X86_USER_SPACE_MSR + KVM_X86_SET_MSR_FILTER for the Hyper-V range.
  static absl::Status EnableSyntheticMsrExits(const KvmSystem& kvm, int vm);

  base::ScopedFd vm_fd_;
  const size_t vcpu_mmap_size_;
  const int max_memslots_;
  const uint32_t vcpu_count_;
  const bool irqchip_;
  const uint32_t kvm_cpuid_base_;
  const bool hyperv_;
  const std::vector<kvm_cpuid_entry2> supported_cpuid_;
  const std::vector<uint32_t> msr_index_list_;
  // What the save path may use (KVM_CHECK_EXTENSION at Create).
  const int xsave_size_;  // 0: no KVM_CAP_XSAVE; else bytes of kvm_xsave
  const bool has_xcrs_;
  const bool has_debugregs_;

  mutable absl::Mutex mu_;
  std::vector<MemoryRegion> regions_ ABSL_GUARDED_BY(mu_);
  // Built from supported_cpuid_ once the TSC frequency is known (at Create if
  // KVM answers KVM_GET_TSC_KHZ on the VM, else at the first CreateVp).
  std::vector<kvm_cpuid_entry2> guest_cpuid_ ABSL_GUARDED_BY(mu_);
  uint32_t tsc_khz_ ABSL_GUARDED_BY(mu_) = 0;
  bool irqchip_created_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> host_kept_hidden_features_;
};

}  // namespace hvcore

#endif  // HVSTACK_HVCORE_PARTITION_H_
