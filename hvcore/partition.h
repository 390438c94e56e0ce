#ifndef HVSTACK_HVCORE_PARTITION_H_
#define HVSTACK_HVCORE_PARTITION_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/scoped_fd.h"
#include "hvcore/kvm_system.h"

namespace hvcore {

class VirtualProcessor;

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
      const KvmSystem& kvm);

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

  // Creates VP `index` (its vcpu id and APIC id), with CPUID from GuestCpuid().
  // The partition must outlive the VP.
  absl::StatusOr<std::unique_ptr<VirtualProcessor>> CreateVp(uint32_t index);

  // The CPUID table given to every VP (before per-VP APIC ids): KVM's supported
  // CPUID minus what this host cannot run in a guest (CX16, XSAVE/OSXSAVE and
  // the AVX family; see README).
  const std::vector<kvm_cpuid_entry2>& guest_cpuid() const {
    return guest_cpuid_;
  }

  size_t vcpu_mmap_size() const { return vcpu_mmap_size_; }

 private:
  struct MemoryRegion {
    uint64_t gpa;
    uint64_t size;
    uint8_t* host;
  };

  Partition(base::ScopedFd vm_fd, size_t vcpu_mmap_size, int max_vcpus,
            int max_memslots, std::vector<kvm_cpuid_entry2> guest_cpuid);

  base::ScopedFd vm_fd_;
  const size_t vcpu_mmap_size_;
  const int max_vcpus_;
  const int max_memslots_;
  const std::vector<kvm_cpuid_entry2> guest_cpuid_;

  mutable absl::Mutex mu_;
  std::vector<MemoryRegion> regions_ ABSL_GUARDED_BY(mu_);
};

// KVM's supported CPUID with the features this host cannot run removed. Exposed
// for tests.
std::vector<kvm_cpuid_entry2> FilterGuestCpuid(
    std::vector<kvm_cpuid_entry2> supported);

}  // namespace hvcore

#endif  // HVSTACK_HVCORE_PARTITION_H_
