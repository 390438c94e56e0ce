// VirtualProcessor::SaveState / RestoreState (issue 14): one VP's state as KVM
// keeps it, in the order KVM needs it back.

#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hvcore/hyperv/tlfs.h"
#include "hvcore/kvm_abi.h"
#include "hvcore/partition.h"
#include "hvcore/virtual_processor.h"

namespace hvcore {
namespace {

// MSRs that need the LAPIC (TSC-deadline mode) in place: set after it.
constexpr uint32_t kMsrTscDeadline = 0x6E0;

template <typename T>
std::string Bytes(const T& value) {
  return std::string(reinterpret_cast<const char*>(&value), sizeof(T));
}

template <typename T>
absl::Status FromBytes(uint32_t vp, const std::string& bytes,
                       absl::string_view what, T* out) {
  if (bytes.size() != sizeof(T)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vp%d: saved %s has %d bytes, expected %d", vp, what,
                        bytes.size(), sizeof(T)));
  }
  std::memcpy(out, bytes.data(), sizeof(T));
  return absl::OkStatus();
}

bool IsSyntheticMsr(uint32_t index) {
  return index >= hyperv::kMsrRangeBase &&
         index - hyperv::kMsrRangeBase < hyperv::kMsrRangeCount;
}

// KVM_GET_MSRS stops at the first MSR it cannot read and returns how many it
// read; skip that one and go on, so one odd MSR does not hide the rest.
absl::Status ReadMsrs(int fd, uint32_t vp, std::vector<uint32_t> indexes,
                      hvstack::saved::VpState& out) {
  size_t start = 0;
  while (start < indexes.size()) {
    const size_t n = indexes.size() - start;
    std::vector<uint8_t> buf(sizeof(kvm_abi::MsrsHeader) +
                             n * sizeof(kvm_msr_entry));
    auto* header = reinterpret_cast<kvm_abi::MsrsHeader*>(buf.data());
    header->nmsrs = static_cast<uint32_t>(n);
    auto* entries = reinterpret_cast<kvm_msr_entry*>(
        buf.data() + sizeof(kvm_abi::MsrsHeader));
    for (size_t i = 0; i < n; ++i) entries[i].index = indexes[start + i];
    const int r = ::ioctl(fd, kvm_abi::kGetMsrs, buf.data());
    if (r < 0) {
      return absl::ErrnoToStatus(
          errno, absl::StrCat("vp", vp, ": KVM_GET_MSRS failed"));
    }
    for (int i = 0; i < r; ++i) {
      hvstack::saved::Msr* m = out.add_msrs();
      m->set_index(entries[i].index);
      m->set_value(entries[i].data);
    }
    start += static_cast<size_t>(r) + 1;  // skip the one KVM refused
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<hvstack::saved::VpState> VirtualProcessor::SaveState() {
  const int fd = fd_.get();
  auto fail = [&](absl::string_view what) {
    return absl::ErrnoToStatus(
        errno, absl::StrCat("vp", index_, ": ", what, " failed"));
  };
  // KVM completes a pending I/O exit at the start of KVM_RUN, then sees
  // immediate_exit and returns EINTR without entering the guest (KVM's API
  // documentation names this use).
  __atomic_store_n(&run_->immediate_exit, 1, __ATOMIC_SEQ_CST);
  const int r = ::ioctl(fd, KVM_RUN, 0);
  const int run_errno = errno;
  __atomic_store_n(&run_->immediate_exit, 0, __ATOMIC_SEQ_CST);
  if (r == 0 || (run_errno != EINTR && run_errno != EAGAIN)) {
    errno = r == 0 ? EINVAL : run_errno;
    return fail("KVM_RUN (completing the last exit)");
  }
  hvstack::saved::VpState out;
  out.set_index(index_);
  kvm_regs regs{};
  if (::ioctl(fd, KVM_GET_REGS, &regs) < 0) return fail("KVM_GET_REGS");
  out.set_regs(Bytes(regs));
  kvm_sregs sregs{};
  if (::ioctl(fd, KVM_GET_SREGS, &sregs) < 0) return fail("KVM_GET_SREGS");
  out.set_sregs(Bytes(sregs));
  if (const int size = partition_->xsave_size(); size > 0) {
    std::string xsave(static_cast<size_t>(size), '\0');
    const unsigned long request =
        size > 4096 ? kvm_abi::kGetXsave2 : kvm_abi::kGetXsave;
    if (::ioctl(fd, request, xsave.data()) < 0) return fail("KVM_GET_XSAVE");
    out.set_xsave(std::move(xsave));
  } else {
    kvm_fpu fpu{};
    if (::ioctl(fd, KVM_GET_FPU, &fpu) < 0) return fail("KVM_GET_FPU");
    out.set_fpu(Bytes(fpu));
  }
  if (partition_->has_xcrs()) {
    kvm_xcrs xcrs{};
    if (::ioctl(fd, KVM_GET_XCRS, &xcrs) < 0) return fail("KVM_GET_XCRS");
    out.set_xcrs(Bytes(xcrs));
  }
  std::vector<uint32_t> indexes;
  for (uint32_t index : partition_->msr_index_list()) {
    if (!IsSyntheticMsr(index)) indexes.push_back(index);
  }
  if (absl::Status s = ReadMsrs(fd, index_, std::move(indexes), out); !s.ok())
    return s;
  if (partition_->has_irqchip()) {
    kvm_lapic_state lapic{};
    if (::ioctl(fd, KVM_GET_LAPIC, &lapic) < 0) return fail("KVM_GET_LAPIC");
    out.set_lapic(Bytes(lapic));
  }
  kvm_vcpu_events events{};
  if (::ioctl(fd, KVM_GET_VCPU_EVENTS, &events) < 0)
    return fail("KVM_GET_VCPU_EVENTS");
  out.set_events(Bytes(events));
  kvm_mp_state mp{};
  if (::ioctl(fd, KVM_GET_MP_STATE, &mp) < 0) return fail("KVM_GET_MP_STATE");
  out.set_mp_state(mp.mp_state);
  if (partition_->has_debugregs()) {
    kvm_debugregs debug{};
    if (::ioctl(fd, KVM_GET_DEBUGREGS, &debug) < 0)
      return fail("KVM_GET_DEBUGREGS");
    out.set_debugregs(Bytes(debug));
  }
  return out;
}

absl::Status VirtualProcessor::RestoreState(
    const hvstack::saved::VpState& state) {
  const int fd = fd_.get();
  auto fail = [&](absl::string_view what) {
    return absl::ErrnoToStatus(errno, absl::StrCat("vp", index_, ": ", what,
                                                   " refused the saved state"));
  };
  if (state.index() != index_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "saved VP state for vp%d given to vp%d", state.index(), index_));
  }
  // Check every size before anything reaches KVM, so a bad file changes
  // nothing.
  kvm_regs regs{};
  kvm_sregs sregs{};
  kvm_fpu fpu{};
  kvm_xcrs xcrs{};
  kvm_lapic_state lapic{};
  kvm_vcpu_events events{};
  kvm_debugregs debug{};
  if (absl::Status s = FromBytes(index_, state.regs(), "registers", &regs);
      !s.ok())
    return s;
  if (absl::Status s =
          FromBytes(index_, state.sregs(), "segment registers", &sregs);
      !s.ok())
    return s;
  const int xsave_size = partition_->xsave_size();
  if (!state.xsave().empty()) {
    if (xsave_size == 0) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "vp%d: the saved state has XSAVE state and this host's KVM has no "
          "KVM_CAP_XSAVE",
          index_));
    }
    if (state.xsave().size() < 4096 ||
        state.xsave().size() > static_cast<size_t>(xsave_size)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "vp%d: saved XSAVE state has %d bytes; this host takes 4096 to %d",
          index_, state.xsave().size(), xsave_size));
    }
  } else if (absl::Status s = FromBytes(index_, state.fpu(), "FPU", &fpu);
             !s.ok()) {
    return s;
  }
  if (!state.xcrs().empty()) {
    if (absl::Status s = FromBytes(index_, state.xcrs(), "XCRs", &xcrs);
        !s.ok())
      return s;
    if (xcrs.nr_xcrs > KVM_MAX_XCRS) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "vp%d: saved XCRs claim %d registers", index_, xcrs.nr_xcrs));
    }
  }
  if (partition_->has_irqchip()) {
    if (absl::Status s = FromBytes(index_, state.lapic(), "LAPIC", &lapic);
        !s.ok())
      return s;
  }
  if (absl::Status s = FromBytes(index_, state.events(), "events", &events);
      !s.ok())
    return s;
  if (!state.debugregs().empty()) {
    if (absl::Status s =
            FromBytes(index_, state.debugregs(), "debug registers", &debug);
        !s.ok())
      return s;
  }

  if (::ioctl(fd, KVM_SET_REGS, &regs) < 0) return fail("KVM_SET_REGS");
  if (!state.xsave().empty()) {
    // KVM_SET_XSAVE reads as many bytes as KVM_CAP_XSAVE2 says: pad.
    std::string xsave = state.xsave();
    xsave.resize(static_cast<size_t>(xsave_size), '\0');
    if (::ioctl(fd, kvm_abi::kSetXsave, xsave.data()) < 0)
      return fail("KVM_SET_XSAVE");
  } else if (::ioctl(fd, KVM_SET_FPU, &fpu) < 0) {
    return fail("KVM_SET_FPU");
  }
  if (!state.xcrs().empty() && partition_->has_xcrs()) {
    if (::ioctl(fd, KVM_SET_XCRS, &xcrs) < 0) return fail("KVM_SET_XCRS");
  }
  // sregs carry the APIC base: before the LAPIC, whose ID format depends on
  // x2APIC mode.
  if (::ioctl(fd, KVM_SET_SREGS, &sregs) < 0) return fail("KVM_SET_SREGS");
  std::vector<kvm_msr_entry> msrs;
  std::vector<kvm_msr_entry> after_lapic;
  for (const hvstack::saved::Msr& m : state.msrs()) {
    if (IsSyntheticMsr(m.index())) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "vp%d: saved MSR 0x%x is in the synthetic range", index_, m.index()));
    }
    if (!partition_->KvmHasMsr(m.index())) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "vp%d: the saved state has MSR 0x%x, which this host's KVM does not "
          "list",
          index_, m.index()));
    }
    kvm_msr_entry e{};
    e.index = m.index();
    e.data = m.value();
    (m.index() == kMsrTscDeadline ? after_lapic : msrs).push_back(e);
  }
  if (absl::Status s = SetMsrs(msrs); !s.ok()) return s;
  if (partition_->has_irqchip()) {
    if (::ioctl(fd, KVM_SET_LAPIC, &lapic) < 0) return fail("KVM_SET_LAPIC");
  }
  if (::ioctl(fd, KVM_SET_VCPU_EVENTS, &events) < 0)
    return fail("KVM_SET_VCPU_EVENTS");
  kvm_mp_state mp{};
  mp.mp_state = state.mp_state();
  if (::ioctl(fd, KVM_SET_MP_STATE, &mp) < 0) return fail("KVM_SET_MP_STATE");
  if (absl::Status s = SetMsrs(after_lapic); !s.ok()) return s;
  if (!state.debugregs().empty() && partition_->has_debugregs()) {
    if (::ioctl(fd, KVM_SET_DEBUGREGS, &debug) < 0)
      return fail("KVM_SET_DEBUGREGS");
  }
  return absl::OkStatus();
}

}  // namespace hvcore
