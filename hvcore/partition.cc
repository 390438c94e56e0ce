#include "hvcore/partition.h"

#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hvcore/boot_layout.h"
#include "hvcore/virtual_processor.h"

namespace hvcore {
namespace {

absl::Status IoctlError(absl::string_view what) {
  return absl::ErrnoToStatus(errno, what);
}

void ClearBits(uint32_t& reg, std::initializer_list<int> bits) {
  for (int b : bits) reg &= ~(1u << b);
}

}  // namespace

std::vector<kvm_cpuid_entry2> FilterGuestCpuid(
    std::vector<kvm_cpuid_entry2> supported) {
  std::vector<kvm_cpuid_entry2> out;
  out.reserve(supported.size());
  for (kvm_cpuid_entry2 e : supported) {
    switch (e.function) {
      case 0x1:
        // kvm_pvm's emulator rejects lock cmpxchg16b and xsave/xrstor
        // (host-facts.md), so CX16 and XSAVE go; OSXSAVE follows XSAVE, and the
        // AVX family needs XSAVE-managed state. Bits: FMA 12, CX16 13, XSAVE
        // 26, OSXSAVE 27, AVX 28, F16C 29. Bit 31: hypervisor.
        ClearBits(e.ecx, {12, 13, 26, 27, 28, 29});
        e.ecx |= 1u << 31;
        break;
      case 0x7:
        if (e.index == 0) {
          // EBX: AVX2 5, AVX512F 16, DQ 17, IFMA 21, PF 26, ER 27, CD 28, BW
          // 30, VL 31.
          ClearBits(e.ebx, {5, 16, 17, 21, 26, 27, 28, 30, 31});
          // ECX: AVX512_VBMI 1, VBMI2 6, VAES 9, VPCLMULQDQ 10, VNNI 11, BITALG
          // 12, VPOPCNTDQ 14.
          ClearBits(e.ecx, {1, 6, 9, 10, 11, 12, 14});
          // EDX: 4VNNIW 2, 4FMAPS 3, VP2INTERSECT 8, AMX-BF16 22, AVX512_FP16
          // 23, AMX 24/25.
          ClearBits(e.edx, {2, 3, 8, 22, 23, 24, 25});
        } else if (e.index == 1) {
          // EAX: AVX_VNNI 4, AVX512_BF16 5.
          ClearBits(e.eax, {4, 5});
        }
        break;
      case 0xD:
        // XSAVE state enumeration: meaningless without XSAVE.
        continue;
      case 0x80000001:
        // AMD VEX/XOP encodings: XOP 11, FMA4 16.
        ClearBits(e.ecx, {11, 16});
        break;
      default:
        break;
    }
    out.push_back(e);
  }
  return out;
}

Partition::Partition(base::ScopedFd vm_fd, size_t vcpu_mmap_size, int max_vcpus,
                     int max_memslots,
                     std::vector<kvm_cpuid_entry2> guest_cpuid)
    : vm_fd_(std::move(vm_fd)),
      vcpu_mmap_size_(vcpu_mmap_size),
      max_vcpus_(max_vcpus),
      max_memslots_(max_memslots),
      guest_cpuid_(std::move(guest_cpuid)) {}

Partition::~Partition() = default;

absl::StatusOr<std::unique_ptr<Partition>> Partition::Create(
    const KvmSystem& kvm) {
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
  return std::unique_ptr<Partition>(new Partition(
      std::move(vm_fd), kvm.vcpu_mmap_size(), kvm.max_vcpus(),
      kvm.max_memslots(), FilterGuestCpuid(kvm.supported_cpuid())));
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
  if (max_vcpus_ > 0 && index >= static_cast<uint32_t>(max_vcpus_)) {
    return absl::InvalidArgumentError(
        absl::StrCat("VP ", index, ": KVM allows at most ", max_vcpus_,
                     " VPs per partition"));
  }
  return VirtualProcessor::Create(this, index);
}

}  // namespace hvcore
