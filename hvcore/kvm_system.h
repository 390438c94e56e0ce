#ifndef HVSTACK_HVCORE_KVM_SYSTEM_H_
#define HVSTACK_HVCORE_KVM_SYSTEM_H_

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/scoped_fd.h"

namespace hvcore {

// The host's KVM, checked once: API version 12 and every capability hvstack
// relies on. Everything a partition needs later (vcpu mmap size, vcpu limits,
// the CPUID the host can virtualize) is read here so that a missing feature
// fails at start-up, with a message naming it, rather than in the middle of a
// guest run. Immutable after construction; safe to share between threads.
class KvmSystem {
 public:
  // Opens `path` (normally "/dev/kvm") read-write, close-on-exec.
  static absl::StatusOr<std::unique_ptr<KvmSystem>> Open(
      absl::string_view path = "/dev/kvm");

  // Adopts an already-open descriptor (vmwp receives one from vmms and cannot
  // open /dev/kvm inside its sandbox). `name` is only used in error messages.
  static absl::StatusOr<std::unique_ptr<KvmSystem>> Adopt(
      base::ScopedFd fd, absl::string_view name = "/dev/kvm");

  // A second handle on the same KVM (dup'd descriptor) with the already
  // probed facts: no ioctls besides the dup. For objects that must outlive
  // the KvmSystem they were given (vid::Partition, for Reset()).
  absl::StatusOr<std::unique_ptr<KvmSystem>> Duplicate() const;

  KvmSystem(const KvmSystem&) = delete;
  KvmSystem& operator=(const KvmSystem&) = delete;

  int fd() const { return fd_.get(); }
  const std::string& name() const { return name_; }
  // Size of the kvm_run area each vcpu fd must mmap.
  size_t vcpu_mmap_size() const { return vcpu_mmap_size_; }
  // KVM_CAP_NR_VCPUS (recommended) and KVM_CAP_MAX_VCPUS (hard limit).
  int recommended_vcpus() const { return recommended_vcpus_; }
  int max_vcpus() const { return max_vcpus_; }
  int max_memslots() const { return max_memslots_; }
  // KVM_CAP_EXIT_ON_EMULATION_FAILURE: KVM can hand us the failing
  // instruction's bytes.
  bool has_exit_on_emulation_failure() const {
    return has_exit_on_emulation_failure_;
  }
  // KVM_GET_SUPPORTED_CPUID, unmodified.
  const std::vector<kvm_cpuid_entry2>& supported_cpuid() const {
    return supported_cpuid_;
  }

  // KVM_GET_MSR_INDEX_LIST: the MSRs KVM saves/restores and emulates.
  const std::vector<uint32_t>& msr_index_list() const {
    return msr_index_list_;
  }
  bool HasMsr(uint32_t index) const;

  // KVM_CHECK_EXTENSION on the system fd; <= 0 means "not supported".
  int CheckExtension(int cap) const;

 private:
  KvmSystem(base::ScopedFd fd, std::string name)
      : fd_(std::move(fd)), name_(std::move(name)) {}
  absl::Status Probe();

  base::ScopedFd fd_;
  std::string name_;
  size_t vcpu_mmap_size_ = 0;
  int recommended_vcpus_ = 0;
  int max_vcpus_ = 0;
  int max_memslots_ = 0;
  bool has_exit_on_emulation_failure_ = false;
  std::vector<kvm_cpuid_entry2> supported_cpuid_;
  std::vector<uint32_t> msr_index_list_;
};

}  // namespace hvcore

#endif  // HVSTACK_HVCORE_KVM_SYSTEM_H_
