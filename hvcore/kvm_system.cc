#include "hvcore/kvm_system.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "hvcore/kvm_abi.h"

namespace hvcore {
namespace {

// Capabilities without which hvstack cannot run a partition at all, and why
// each is needed.
struct RequiredCap {
  int cap;
  const char* name;
  const char* why;
};
constexpr RequiredCap kRequiredCaps[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY",
     "guest RAM is mapped from userspace"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT",
     "stopping a VP from another thread without races"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR",
     "placing KVM's TSS pages in the MMIO hole"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID",
     "KVM_GET_SUPPORTED_CPUID / KVM_SET_CPUID2"},
    {KVM_CAP_NR_VCPUS, "KVM_CAP_NR_VCPUS",
     "knowing how many VPs a partition may have"},
    {KVM_CAP_MAX_VCPUS, "KVM_CAP_MAX_VCPUS",
     "knowing how many VPs a partition may have"},
    {KVM_CAP_NR_MEMSLOTS, "KVM_CAP_NR_MEMSLOTS",
     "low and high RAM need two memory slots"},
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP",
     "the in-kernel PIC, IOAPIC and LAPICs (interrupts, SMP start-up)"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2", "the in-kernel PIT (timer interrupts)"},
    {KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI", "message-signalled interrupts"},
    {KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS",
     "injecting exceptions (completing int3)"},
    {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE", "application processor states"},
};

constexpr int kMaxCpuidEntries = 256;

}  // namespace

absl::StatusOr<std::unique_ptr<KvmSystem>> KvmSystem::Open(
    absl::string_view path) {
  std::string p(path);
  int fd = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    std::string hint;
    if (err == ENOENT) hint = " (is the kvm module loaded?)";
    if (err == EACCES || err == EPERM)
      hint = " (is this user in the kvm group?)";
    return absl::FailedPreconditionError(
        absl::StrCat(p, ": cannot open: ", std::strerror(err), hint));
  }
  return Adopt(base::ScopedFd(fd), path);
}

absl::StatusOr<std::unique_ptr<KvmSystem>> KvmSystem::Adopt(
    base::ScopedFd fd, absl::string_view name) {
  if (!fd.valid()) {
    return absl::FailedPreconditionError(
        absl::StrCat(name, ": not an open descriptor"));
  }
  std::unique_ptr<KvmSystem> kvm(
      new KvmSystem(std::move(fd), std::string(name)));
  if (absl::Status s = kvm->Probe(); !s.ok()) return s;
  return kvm;
}

absl::StatusOr<std::unique_ptr<KvmSystem>> KvmSystem::Duplicate() const {
  int fd = ::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat(name_, ": dup failed"));
  }
  std::unique_ptr<KvmSystem> copy(new KvmSystem(base::ScopedFd(fd), name_));
  copy->vcpu_mmap_size_ = vcpu_mmap_size_;
  copy->recommended_vcpus_ = recommended_vcpus_;
  copy->max_vcpus_ = max_vcpus_;
  copy->max_memslots_ = max_memslots_;
  copy->has_exit_on_emulation_failure_ = has_exit_on_emulation_failure_;
  copy->supported_cpuid_ = supported_cpuid_;
  copy->msr_index_list_ = msr_index_list_;
  return copy;
}

bool KvmSystem::HasMsr(uint32_t index) const {
  return std::find(msr_index_list_.begin(), msr_index_list_.end(), index) !=
         msr_index_list_.end();
}

int KvmSystem::CheckExtension(int cap) const {
  int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

absl::Status KvmSystem::Probe() {
  int version = ::ioctl(fd_.get(), KVM_GET_API_VERSION, 0);
  if (version < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        name_, ": KVM_GET_API_VERSION failed: ", std::strerror(errno),
        " (is this really /dev/kvm?)"));
  }
  if (version != KVM_API_VERSION) {
    return absl::FailedPreconditionError(
        absl::StrCat(name_, ": KVM API version is ", version,
                     ", hvstack needs ", KVM_API_VERSION));
  }
  for (const RequiredCap& c : kRequiredCaps) {
    if (CheckExtension(c.cap) <= 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(name_, ": KVM lacks ", c.name, ", needed for ", c.why,
                       "; use a newer host kernel"));
    }
  }
  int mmap_size = ::ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size < static_cast<int>(sizeof(kvm_run))) {
    return absl::FailedPreconditionError(absl::StrCat(
        name_, ": KVM_GET_VCPU_MMAP_SIZE returned ", mmap_size,
        mmap_size < 0 ? absl::StrCat(" (", std::strerror(errno), ")") : ""));
  }
  vcpu_mmap_size_ = static_cast<size_t>(mmap_size);
  recommended_vcpus_ = CheckExtension(KVM_CAP_NR_VCPUS);
  max_vcpus_ = CheckExtension(KVM_CAP_MAX_VCPUS);
  max_memslots_ = CheckExtension(KVM_CAP_NR_MEMSLOTS);
  if (max_memslots_ < 2) {
    return absl::FailedPreconditionError(
        absl::StrCat(name_, ": KVM offers ", max_memslots_,
                     " memory slots, hvstack needs at least 2"));
  }
  has_exit_on_emulation_failure_ =
      CheckExtension(KVM_CAP_EXIT_ON_EMULATION_FAILURE) > 0;

  // KVM_GET_MSR_INDEX_LIST: on E2BIG, KVM writes the needed count into nmsrs.
  {
    std::vector<uint32_t> buf(1 + 256);
    buf[0] = 256;
    int r = ::ioctl(fd_.get(), kvm_abi::kGetMsrIndexList, buf.data());
    if (r < 0 && errno == E2BIG && buf[0] > 256 && buf[0] < 65536) {
      buf.assign(1 + buf[0], 0);
      buf[0] = static_cast<uint32_t>(buf.size() - 1);
      r = ::ioctl(fd_.get(), kvm_abi::kGetMsrIndexList, buf.data());
    }
    if (r < 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          name_, ": KVM_GET_MSR_INDEX_LIST failed: ", std::strerror(errno)));
    }
    uint32_t n = std::min<uint32_t>(buf[0], buf.size() - 1);
    msr_index_list_.assign(buf.begin() + 1, buf.begin() + 1 + n);
  }

  // KVM_GET_SUPPORTED_CPUID takes a variable-length struct; E2BIG means "more
  // room please".
  for (int n = 64; n <= kMaxCpuidEntries * 4; n *= 2) {
    // C layout (see kvm_abi.h): an 8-byte header, then the entries.
    std::vector<uint8_t> buf(sizeof(kvm_abi::Cpuid2Header) +
                             n * sizeof(kvm_cpuid_entry2));
    auto* header = reinterpret_cast<kvm_abi::Cpuid2Header*>(buf.data());
    header->nent = n;
    if (::ioctl(fd_.get(), kvm_abi::kGetSupportedCpuid, buf.data()) == 0) {
      uint32_t got = std::min<uint32_t>(header->nent, n);
      supported_cpuid_.resize(got);
      std::memcpy(supported_cpuid_.data(),
                  buf.data() + sizeof(kvm_abi::Cpuid2Header),
                  got * sizeof(kvm_cpuid_entry2));
      return absl::OkStatus();
    }
    if (errno != E2BIG) {
      return absl::FailedPreconditionError(absl::StrCat(
          name_, ": KVM_GET_SUPPORTED_CPUID failed: ", std::strerror(errno)));
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat(name_, ": KVM_GET_SUPPORTED_CPUID wants more than ",
                   kMaxCpuidEntries * 4, " entries"));
}

}  // namespace hvcore
