#include "hvcore/virtual_processor.h"

#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "hvcore/boot_layout.h"
#include "hvcore/kvm_abi.h"
#include "hvcore/partition.h"

namespace hvcore {
namespace {

constexpr size_t kMaxInstructionBytes = 15;
constexpr uint64_t kPageSize = 4096;

// x86 control/EFER bits used by the long-mode set-up.
constexpr uint64_t kCr0Pe = 1ull << 0;
constexpr uint64_t kCr0Mp = 1ull << 1;
constexpr uint64_t kCr0Et = 1ull << 4;
constexpr uint64_t kCr0Ne = 1ull << 5;
constexpr uint64_t kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint8_t kTssBusy32 = 0xB;
constexpr uint64_t kEferLme = 1ull << 8;
constexpr uint64_t kEferLma = 1ull << 10;
constexpr uint64_t kPtePresent = 1ull << 0;
constexpr uint64_t kPteWrite = 1ull << 1;
constexpr uint64_t kPteLarge = 1ull << 7;  // PS: a 2 MiB page in a PD entry

void KickHandler(int) {}  // Its only job is to make KVM_RUN return EINTR.

void InstallKickHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = KickHandler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must come back with EINTR
    sigaction(VpKickSignal(), &sa, nullptr);
  });
}

absl::Status IoctlError(uint32_t index, absl::string_view what) {
  return absl::ErrnoToStatus(errno,
                             absl::StrCat("vp", index, ": ", what, " failed"));
}

std::string HexBytes(const std::vector<uint8_t>& bytes) {
  return absl::StrJoin(bytes, " ", [](std::string* out, uint8_t b) {
    absl::StrAppend(out, absl::Hex(b, absl::kZeroPad2));
  });
}

kvm_segment CodeSegment64() {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xFFFFFFFF;
  s.selector = kBootCodeSelector;
  s.type = 0xB;  // execute/read, accessed
  s.present = 1;
  s.dpl = 0;
  s.db = 0;  // must be 0 when L=1
  s.s = 1;
  s.l = 1;
  s.g = 1;
  return s;
}

kvm_segment CodeSegment32() {
  kvm_segment s = CodeSegment64();
  s.l = 0;
  s.db = 1;
  return s;
}

kvm_segment DataSegment() {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xFFFFFFFF;
  s.selector = kBootDataSelector;
  s.type = 0x3;  // read/write, accessed
  s.present = 1;
  s.dpl = 0;
  s.db = 1;
  s.s = 1;
  s.l = 0;
  s.g = 1;
  return s;
}

// Packs a kvm_segment into the 8-byte GDT descriptor format.
uint64_t GdtEntry(const kvm_segment& s) {
  uint64_t limit = s.g ? (s.limit >> 12) : s.limit;
  uint64_t e = 0;
  e |= limit & 0xFFFF;
  e |= (s.base & 0xFFFFFFull) << 16;
  e |= static_cast<uint64_t>(s.type & 0xF) << 40;
  e |= static_cast<uint64_t>(s.s & 1) << 44;
  e |= static_cast<uint64_t>(s.dpl & 3) << 45;
  e |= static_cast<uint64_t>(s.present & 1) << 47;
  e |= ((limit >> 16) & 0xF) << 48;
  e |= static_cast<uint64_t>(s.avl & 1) << 52;
  e |= static_cast<uint64_t>(s.l & 1) << 53;
  e |= static_cast<uint64_t>(s.db & 1) << 54;
  e |= static_cast<uint64_t>(s.g & 1) << 55;
  e |= ((s.base >> 24) & 0xFF) << 56;
  return e;
}

void Store64(std::span<uint8_t> mem, uint64_t offset, uint64_t value) {
  std::memcpy(mem.data() + offset, &value, sizeof(value));
}

}  // namespace

int VpKickSignal() { return SIGRTMIN; }

std::string DescribeIntercept(const Intercept& intercept) {
  struct Visitor {
    std::string operator()(const PortIo& io) const {
      return absl::StrFormat("port %s 0x%x size %d count %d value 0x%x",
                             io.is_write ? "out" : "in", io.port, io.size,
                             io.count, io.value);
    }
    std::string operator()(const Mmio& m) const {
      return absl::StrFormat("mmio %s gpa=0x%x len %d",
                             m.is_write ? "write" : "read", m.gpa, m.len);
    }
    std::string operator()(const Shutdown& s) const {
      return absl::StrFormat("triple fault (shutdown) at rip=0x%x", s.rip);
    }
    std::string operator()(const Halt&) const { return "halt"; }
    std::string operator()(const EmulationFailure& e) const {
      return absl::StrFormat(
          "emulation failure at rip=0x%x: bytes %s (from %s)", e.rip,
          e.bytes.empty() ? "none" : HexBytes(e.bytes), e.source);
    }
    std::string operator()(const InternalError& e) const {
      return absl::StrFormat(
          "KVM internal error, suberror %d, at rip=0x%x, data [%s]", e.suberror,
          e.rip, absl::StrJoin(e.data, " ", [](std::string* out, uint64_t v) {
            absl::StrAppend(out, "0x", absl::Hex(v));
          }));
    }
    std::string operator()(const SystemEvent& e) const {
      const char* name = "unknown";
      switch (e.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
          name = "shutdown";
          break;
        case KVM_SYSTEM_EVENT_RESET:
          name = "reset";
          break;
        case KVM_SYSTEM_EVENT_CRASH:
          name = "crash";
          break;
        default:
          break;
      }
      return absl::StrFormat("system event %s (%d)", name, e.type);
    }
    std::string operator()(const Interrupted&) const { return "interrupted"; }
    std::string operator()(const FailEntry& f) const {
      return absl::StrFormat("VM entry failed: hardware reason 0x%x on cpu %d",
                             f.hardware_entry_failure_reason, f.cpu);
    }
    std::string operator()(const Unknown& u) const {
      return absl::StrFormat("unknown KVM exit reason %d", u.exit_reason);
    }
    std::string operator()(const MsrRead& m) const {
      return absl::StrFormat("rdmsr 0x%x", m.index);
    }
    std::string operator()(const MsrWrite& m) const {
      return absl::StrFormat("wrmsr 0x%x value 0x%x", m.index, m.value);
    }
  };
  return std::visit(Visitor{}, intercept);
}

VirtualProcessor::VirtualProcessor(Partition* partition, uint32_t index,
                                   base::ScopedFd fd, kvm_run* run,
                                   size_t run_size)
    : partition_(partition),
      index_(index),
      fd_(std::move(fd)),
      run_(run),
      run_size_(run_size) {}

VirtualProcessor::~VirtualProcessor() { ::munmap(run_, run_size_); }

absl::StatusOr<std::unique_ptr<VirtualProcessor>> VirtualProcessor::Create(
    Partition* partition, uint32_t index) {
  InstallKickHandler();
  int fd = ::ioctl(partition->fd(), KVM_CREATE_VCPU,
                   static_cast<unsigned long>(index));
  if (fd < 0) return IoctlError(index, "KVM_CREATE_VCPU");
  base::ScopedFd vcpu_fd(fd);
  size_t size = partition->vcpu_mmap_size();
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return IoctlError(index, "mmap of kvm_run");
  // CPUID and MSRs are set by Partition::CreateVp.
  return std::unique_ptr<VirtualProcessor>(new VirtualProcessor(
      partition, index, std::move(vcpu_fd), static_cast<kvm_run*>(p), size));
}

absl::Status VirtualProcessor::SetCpuid(
    std::span<const kvm_cpuid_entry2> entries) {
  // C layout (see kvm_abi.h): an 8-byte header, then the entries.
  std::vector<uint8_t> buf(sizeof(kvm_abi::Cpuid2Header) +
                           entries.size() * sizeof(kvm_cpuid_entry2));
  auto* header = reinterpret_cast<kvm_abi::Cpuid2Header*>(buf.data());
  header->nent = static_cast<uint32_t>(entries.size());
  std::memcpy(buf.data() + sizeof(kvm_abi::Cpuid2Header), entries.data(),
              entries.size() * sizeof(kvm_cpuid_entry2));
  if (::ioctl(fd_.get(), kvm_abi::kSetCpuid2, buf.data()) < 0) {
    return IoctlError(index_, "KVM_SET_CPUID2");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<kvm_cpuid_entry2>> VirtualProcessor::GetCpuid()
    const {
  constexpr uint32_t kMax = 512;
  std::vector<uint8_t> buf(sizeof(kvm_abi::Cpuid2Header) +
                           kMax * sizeof(kvm_cpuid_entry2));
  auto* header = reinterpret_cast<kvm_abi::Cpuid2Header*>(buf.data());
  header->nent = kMax;
  if (::ioctl(fd_.get(), kvm_abi::kGetCpuid2, buf.data()) < 0) {
    return IoctlError(index_, "KVM_GET_CPUID2");
  }
  std::vector<kvm_cpuid_entry2> out(std::min(header->nent, kMax));
  std::memcpy(out.data(), buf.data() + sizeof(kvm_abi::Cpuid2Header),
              out.size() * sizeof(kvm_cpuid_entry2));
  // Some KVMs (seen: Linux 6.1 nested under QEMU) leave nent as given, so
  // the unused tail comes back as all-zero entries; a real leaf 0 is never
  // all zero (EAX = max leaf, EBX/ECX/EDX = vendor).
  while (!out.empty()) {
    const kvm_cpuid_entry2& e = out.back();
    if (e.function != 0 || e.index != 0 || e.flags != 0 || e.eax != 0 ||
        e.ebx != 0 || e.ecx != 0 || e.edx != 0) {
      break;
    }
    out.pop_back();
  }
  return out;
}

absl::Status VirtualProcessor::SetMsrs(std::span<const kvm_msr_entry> msrs) {
  if (msrs.empty()) return absl::OkStatus();
  // C layout (see kvm_abi.h): an 8-byte header, then the entries.
  std::vector<uint8_t> buf(sizeof(kvm_abi::MsrsHeader) +
                           msrs.size() * sizeof(kvm_msr_entry));
  auto* header = reinterpret_cast<kvm_abi::MsrsHeader*>(buf.data());
  header->nmsrs = static_cast<uint32_t>(msrs.size());
  std::memcpy(buf.data() + sizeof(kvm_abi::MsrsHeader), msrs.data(),
              msrs.size() * sizeof(kvm_msr_entry));
  int r = ::ioctl(fd_.get(), kvm_abi::kSetMsrs, buf.data());
  if (r < 0) return IoctlError(index_, "KVM_SET_MSRS");
  // KVM stops at the first MSR it refuses and returns how many it set.
  if (static_cast<size_t>(r) < msrs.size()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("vp%d: KVM_SET_MSRS refused MSR 0x%x = 0x%x", index_,
                        msrs[r].index, msrs[r].data));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> VirtualProcessor::GetMsr(uint32_t index) const {
  struct {
    kvm_abi::MsrsHeader header;
    kvm_msr_entry entry;
  } buf{};
  static_assert(sizeof(buf) == 24);
  buf.header.nmsrs = 1;
  buf.entry.index = index;
  int r = ::ioctl(fd_.get(), kvm_abi::kGetMsrs, &buf);
  if (r < 0) return IoctlError(index_, "KVM_GET_MSRS");
  if (r != 1) {
    return absl::NotFoundError(
        absl::StrFormat("vp%d: KVM cannot read MSR 0x%x", index_, index));
  }
  return buf.entry.data;
}

absl::StatusOr<uint32_t> VirtualProcessor::GetMpState() const {
  kvm_mp_state mp{};
  if (::ioctl(fd_.get(), KVM_GET_MP_STATE, &mp) < 0)
    return IoctlError(index_, "KVM_GET_MP_STATE");
  return mp.mp_state;
}

absl::Status VirtualProcessor::InjectException(
    uint8_t vector, std::optional<uint32_t> error_code) {
  kvm_vcpu_events events{};
  if (::ioctl(fd_.get(), KVM_GET_VCPU_EVENTS, &events) < 0)
    return IoctlError(index_, "KVM_GET_VCPU_EVENTS");
  events.exception.injected = 1;
  events.exception.nr = vector;
  events.exception.has_error_code = error_code.has_value() ? 1 : 0;
  events.exception.error_code = error_code.value_or(0);
  // Only the exception is written back: no VALID_* flags for NMI, SIPI,
  // interrupt shadow or SMM state.
  events.flags = 0;
  if (::ioctl(fd_.get(), KVM_SET_VCPU_EVENTS, &events) < 0)
    return IoctlError(index_, "KVM_SET_VCPU_EVENTS");
  return absl::OkStatus();
}

namespace {

// kvm_regs fields in the x86 register-number order (rax, rcx, rdx, rbx, rsp,
// rbp, rsi, rdi, r8..r15).
__u64* Gpr(kvm_regs& r, int n) {
  __u64* const order[16] = {&r.rax, &r.rcx, &r.rdx, &r.rbx, &r.rsp, &r.rbp,
                            &r.rsi, &r.rdi, &r.r8,  &r.r9,  &r.r10, &r.r11,
                            &r.r12, &r.r13, &r.r14, &r.r15};
  return order[n & 15];
}

// POPCNT with a register source: F3 [66] [REX] 0F B8 /r, ModRM.mod == 3.
// Returns the instruction length, or 0 if `bytes` is not that. Exact: the
// destination gets the bit count (32-bit results zero-extend, 16-bit ones
// merge), ZF = (source == 0), CF/OF/SF/AF/PF cleared.
size_t CompletePopcnt(std::span<const uint8_t> bytes, bool long64,
                      kvm_regs& regs) {
  size_t i = 0;
  bool rep = false, opsize = false;
  for (; i < bytes.size() && i < 4; ++i) {
    if (bytes[i] == 0xF3) {
      rep = true;
    } else if (bytes[i] == 0x66) {
      opsize = true;
    } else {
      break;
    }
  }
  uint8_t rex = 0;
  if (long64 && i < bytes.size() && (bytes[i] & 0xF0) == 0x40) rex = bytes[i++];
  if (!rep || i + 3 > bytes.size() || bytes[i] != 0x0F || bytes[i + 1] != 0xB8)
    return 0;
  const uint8_t modrm = bytes[i + 2];
  if ((modrm >> 6) != 3) return 0;  // memory source: not completed
  const int dst = ((modrm >> 3) & 7) | ((rex & 0x4) << 1);
  const int src = (modrm & 7) | ((rex & 0x1) << 3);
  const int bits = (rex & 0x8) ? 64 : (opsize ? 16 : 32);
  uint64_t value = *Gpr(regs, src);
  if (bits < 64) value &= (1ull << bits) - 1;
  const uint64_t count = static_cast<uint64_t>(__builtin_popcountll(value));
  __u64* d = Gpr(regs, dst);
  if (bits == 16) {
    *d = (*d & ~0xFFFFull) | count;
  } else {
    *d = count;  // 32-bit writes zero-extend
  }
  constexpr uint64_t kCf = 1 << 0, kPf = 1 << 2, kAf = 1 << 4, kZf = 1 << 6,
                     kSf = 1 << 7, kOf = 1 << 11;
  regs.rflags &= ~(kCf | kPf | kAf | kZf | kSf | kOf);
  if (value == 0) regs.rflags |= kZf;
  return i + 3;
}

}  // namespace

absl::StatusOr<bool> VirtualProcessor::CompleteRejectedInstruction(
    const EmulationFailure& failure) {
  constexpr uint8_t kInt3 = 0xCC;
  constexpr uint8_t kBreakpointVector = 3;
  if (failure.bytes.empty()) return false;
  if (failure.bytes[0] != kInt3) {
    absl::StatusOr<kvm_sregs> sregs = GetSregs();
    if (!sregs.ok()) return sregs.status();
    absl::StatusOr<kvm_regs> regs = GetRegs();
    if (!regs.ok()) return regs.status();
    if (regs->rip != failure.rip) return false;
    const bool long64 = (sregs->efer & kEferLma) && sregs->cs.l;
    if (size_t len = CompletePopcnt(failure.bytes, long64, *regs); len != 0) {
      regs->rip += len;
      if (absl::Status s = SetRegs(*regs); !s.ok()) return s;
      return true;
    }
    // FWAIT (9B): waits for pending unmasked x87 exceptions. With CR0.TS and
    // CR0.MP it raises #NM; with FSW.ES set, #MF (CR0.NE, as Linux runs);
    // otherwise it does nothing.
    if (failure.bytes[0] == 0x9B) {
      constexpr uint64_t kCr0Mp = 1ull << 1, kCr0Ts = 1ull << 3,
                         kCr0Ne = 1ull << 5;
      constexpr uint8_t kNm = 7, kMf = 16;
      if ((sregs->cr0 & kCr0Ts) && (sregs->cr0 & kCr0Mp)) {
        if (absl::Status s = InjectException(kNm); !s.ok()) return s;
        return true;
      }
      kvm_fpu fpu{};
      if (::ioctl(fd_.get(), KVM_GET_FPU, &fpu) < 0) {
        return IoctlError(index_, "KVM_GET_FPU");
      }
      constexpr uint16_t kFswEs = 1 << 7;
      if ((fpu.fsw & kFswEs) && (sregs->cr0 & kCr0Ne)) {
        if (absl::Status s = InjectException(kMf); !s.ok()) return s;
        return true;
      }
      if (fpu.fsw & kFswEs) return false;  // legacy FERR# reporting: not done
      regs->rip += 1;
      if (absl::Status s = SetRegs(*regs); !s.ok()) return s;
      return true;
    }
    // CLAC (0F 01 CA) / STAC (0F 01 CB): clear / set RFLAGS.AC. Privileged:
    // only completed at CPL 0 (elsewhere the CPU raises #UD; leave it).
    const std::vector<uint8_t>& b = failure.bytes;
    if (b.size() >= 3 && b[0] == 0x0F && b[1] == 0x01 &&
        (b[2] == 0xCA || b[2] == 0xCB) && (sregs->cs.selector & 3) == 0 &&
        sregs->cs.dpl == 0) {
      constexpr uint64_t kAc = 1ull << 18;
      regs->rflags =
          b[2] == 0xCA ? (regs->rflags & ~kAc) : (regs->rflags | kAc);
      regs->rip += 3;
      if (absl::Status s = SetRegs(*regs); !s.ok()) return s;
      return true;
    }
    return false;
  }
  absl::StatusOr<kvm_regs> regs = GetRegs();
  if (!regs.ok()) return regs.status();
  if (regs->rip != failure.rip) return false;  // stale report: do not guess
  // #BP is a trap: the saved RIP is the instruction after int3.
  regs->rip += 1;
  if (absl::Status s = SetRegs(*regs); !s.ok()) return s;
  if (absl::Status s = InjectException(kBreakpointVector); !s.ok()) return s;
  return true;
}

absl::StatusOr<kvm_regs> VirtualProcessor::GetRegs() const {
  kvm_regs regs{};
  if (::ioctl(fd_.get(), KVM_GET_REGS, &regs) < 0)
    return IoctlError(index_, "KVM_GET_REGS");
  return regs;
}

absl::Status VirtualProcessor::SetRegs(const kvm_regs& regs) {
  if (::ioctl(fd_.get(), KVM_SET_REGS, &regs) < 0)
    return IoctlError(index_, "KVM_SET_REGS");
  return absl::OkStatus();
}

absl::StatusOr<kvm_sregs> VirtualProcessor::GetSregs() const {
  kvm_sregs sregs{};
  if (::ioctl(fd_.get(), KVM_GET_SREGS, &sregs) < 0)
    return IoctlError(index_, "KVM_GET_SREGS");
  return sregs;
}

absl::Status VirtualProcessor::SetSregs(const kvm_sregs& sregs) {
  if (::ioctl(fd_.get(), KVM_SET_SREGS, &sregs) < 0)
    return IoctlError(index_, "KVM_SET_SREGS");
  return absl::OkStatus();
}

uint64_t VirtualProcessor::CurrentRip() const {
  absl::StatusOr<kvm_regs> regs = GetRegs();
  return regs.ok() ? regs->rip : 0;
}

void VirtualProcessor::RequestExit() {
  // Order matters: the flag first, so that a thread that is about to enter
  // KVM_RUN (and so misses the signal) is turned back by KVM itself.
  __atomic_store_n(&run_->immediate_exit, 1, __ATOMIC_SEQ_CST);
  kickers_.fetch_add(1, std::memory_order_seq_cst);
  if (in_run_.load(std::memory_order_seq_cst)) {
    pthread_kill(run_thread_.load(std::memory_order_relaxed), VpKickSignal());
  }
  kickers_.fetch_sub(1, std::memory_order_seq_cst);
}

absl::StatusOr<Intercept> VirtualProcessor::Run() {
  run_thread_.store(pthread_self(), std::memory_order_relaxed);
  in_run_.store(true, std::memory_order_seq_cst);
  int r = ::ioctl(fd_.get(), KVM_RUN, 0);
  int err = errno;
  in_run_.store(false, std::memory_order_seq_cst);
  // A RequestExit() that saw in_run_ == true may still be about to signal
  // this thread: let it finish before this thread can leave (and exit).
  while (kickers_.load(std::memory_order_seq_cst) != 0) sched_yield();
  if (r < 0) {
    if (err == EINTR || err == EAGAIN) {
      __atomic_store_n(&run_->immediate_exit, 0, __ATOMIC_SEQ_CST);
      return Interrupted{};
    }
    return absl::ErrnoToStatus(err,
                               absl::StrCat("vp", index_, ": KVM_RUN failed"));
  }

  switch (run_->exit_reason) {
    case KVM_EXIT_IO: {
      const auto& io = run_->io;
      uint64_t bytes = static_cast<uint64_t>(io.size) * io.count;
      // The offset comes from the kernel, but check it anyway: a bad one would
      // let a device scribble outside the mapping.
      if ((io.size != 1 && io.size != 2 && io.size != 4) || io.count == 0 ||
          io.data_offset > run_size_ || bytes > run_size_ - io.data_offset) {
        return absl::InternalError(absl::StrFormat(
            "vp%d: malformed KVM_EXIT_IO (size %d, count %d, offset %d)",
            index_, io.size, io.count, io.data_offset));
      }
      PortIo out{};
      out.port = io.port;
      out.size = io.size;
      out.is_write = io.direction == KVM_EXIT_IO_OUT;
      out.count = io.count;
      out.data = std::span<uint8_t>(
          reinterpret_cast<uint8_t*>(run_) + io.data_offset, bytes);
      std::memcpy(&out.value, out.data.data(), io.size);  // little-endian host
      if (!out.is_write) out.value = 0;
      return out;
    }
    case KVM_EXIT_MMIO: {
      auto& m = run_->mmio;
      uint8_t len =
          static_cast<uint8_t>(std::min<uint32_t>(m.len, sizeof(m.data)));
      return Mmio{m.phys_addr, len, m.is_write != 0,
                  std::span<uint8_t>(m.data, len)};
    }
    case KVM_EXIT_SHUTDOWN:
      return Shutdown{CurrentRip()};
    case KVM_EXIT_HLT:
      return Halt{};
    case KVM_EXIT_INTERNAL_ERROR: {
      if (run_->internal.suberror == KVM_INTERNAL_ERROR_EMULATION)
        return DecodeEmulationFailure();
      InternalError e{};
      e.suberror = run_->internal.suberror;
      uint32_t n = std::min<uint32_t>(run_->internal.ndata, 16);
      e.data.assign(run_->internal.data, run_->internal.data + n);
      e.rip = CurrentRip();
      return e;
    }
    case KVM_EXIT_SYSTEM_EVENT: {
      SystemEvent e{};
      e.type = run_->system_event.type;
      uint32_t n = std::min<uint32_t>(run_->system_event.ndata, 16);
      e.data.assign(run_->system_event.data, run_->system_event.data + n);
      return e;
    }
    case KVM_EXIT_INTR:
      return Interrupted{};
    case KVM_EXIT_FAIL_ENTRY:
      return FailEntry{run_->fail_entry.hardware_entry_failure_reason,
                       run_->fail_entry.cpu};
    case KVM_EXIT_X86_RDMSR:
      // Default: #GP, so a handler that forgets to answer is visible.
      run_->msr.error = 1;
      run_->msr.data = 0;
      return MsrRead{run_->msr.index,
                     reinterpret_cast<uint64_t*>(&run_->msr.data),
                     &run_->msr.error};
    case KVM_EXIT_X86_WRMSR:
      run_->msr.error = 1;
      return MsrWrite{run_->msr.index, run_->msr.data, &run_->msr.error};
    default:
      return Unknown{run_->exit_reason};
  }
}

Intercept VirtualProcessor::DecodeEmulationFailure() {
  EmulationFailure e{};
  e.rip = CurrentRip();
  const auto& ef = run_->emulation_failure;
  // ndata counts the u64s after suberror/ndata: flags, then 16 bytes of
  // insn_size+insn_bytes.
  if (ef.ndata >= 3 &&
      (ef.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) &&
      ef.insn_size > 0) {
    size_t n = std::min<size_t>(ef.insn_size, kMaxInstructionBytes);
    e.bytes.assign(ef.insn_bytes, ef.insn_bytes + n);
    e.source = "kvm";
    return e;
  }
  // Fallback: translate RIP and read what RAM holds there (an instruction may
  // straddle two pages; keep what could be read).
  absl::StatusOr<kvm_sregs> sregs = GetSregs();
  uint64_t linear =
      e.rip + (sregs.ok() && !(sregs->efer & kEferLma) ? sregs->cs.base : 0);
  std::vector<uint8_t> buf(kMaxInstructionBytes);
  size_t got = 0;
  absl::Status s = ReadLinear(linear, buf, &got);
  e.bytes.assign(buf.begin(), buf.begin() + got);
  e.source = e.bytes.empty() ? absl::StrCat("unavailable: ", s.message())
                             : "guest memory";
  return e;
}

absl::Status VirtualProcessor::ReadLinear(uint64_t linear,
                                          std::span<uint8_t> out,
                                          size_t* bytes_read) const {
  size_t done = 0;
  if (bytes_read != nullptr) *bytes_read = 0;
  while (done < out.size()) {
    kvm_translation t{};
    t.linear_address = linear;
    if (::ioctl(fd_.get(), KVM_TRANSLATE, &t) < 0) {
      return IoctlError(index_, "KVM_TRANSLATE");
    }
    if (!t.valid) {
      return absl::NotFoundError(absl::StrFormat(
          "vp%d: linear address 0x%x is not mapped by the guest", index_,
          linear));
    }
    size_t chunk = std::min<size_t>(out.size() - done,
                                    kPageSize - (linear & (kPageSize - 1)));
    if (absl::Status s = partition_->ReadPhysical(t.physical_address,
                                                  out.subspan(done, chunk));
        !s.ok()) {
      return s;
    }
    done += chunk;
    if (bytes_read != nullptr) *bytes_read = done;
    linear += chunk;
  }
  return absl::OkStatus();
}

absl::Status VirtualProcessor::SetupLongMode(std::span<uint8_t> low_memory,
                                             uint64_t entry_rip,
                                             uint64_t zero_page_gpa) {
  if (low_memory.size() < kBootReservedEnd) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "vp%d: long-mode set-up needs guest RAM at [0, 0x%x), got 0x%x bytes",
        index_, kBootReservedEnd, low_memory.size()));
  }
  // GDT: null, null, code (0x10), data (0x18); an empty IDT next to it.
  const kvm_segment code = CodeSegment64();
  const kvm_segment data = DataSegment();
  Store64(low_memory, kBootGdtAddress + 0, 0);
  Store64(low_memory, kBootGdtAddress + 8, 0);
  Store64(low_memory, kBootGdtAddress + kBootCodeSelector, GdtEntry(code));
  Store64(low_memory, kBootGdtAddress + kBootDataSelector, GdtEntry(data));
  Store64(low_memory, kBootIdtAddress, 0);
  Store64(low_memory, kBootIdtAddress + 8, 0);

  // Identity map of [0, 4 GiB) with 2 MiB pages: PML4[0] -> PDPT, PDPT[0..3] ->
  // 4 PDs.
  std::memset(low_memory.data() + kBootPml4Address, 0,
              kBootReservedEnd - kBootPml4Address);
  Store64(low_memory, kBootPml4Address,
          kBootPdptAddress | kPtePresent | kPteWrite);
  for (uint64_t i = 0; i < kBootPdPages; ++i) {
    Store64(low_memory, kBootPdptAddress + i * 8,
            (kBootPdAddress + i * kPageSize) | kPtePresent | kPteWrite);
  }
  constexpr uint64_t k2MiB = 2ull << 20;
  for (uint64_t i = 0; i < kBootIdentityMapBytes / k2MiB; ++i) {
    Store64(low_memory, kBootPdAddress + i * 8,
            (i * k2MiB) | kPtePresent | kPteWrite | kPteLarge);
  }

  absl::StatusOr<kvm_sregs> sregs = GetSregs();
  if (!sregs.ok()) return sregs.status();
  sregs->cs = code;
  sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
  sregs->gdt.base = kBootGdtAddress;
  sregs->gdt.limit = kBootGdtEntries * 8 - 1;
  sregs->idt.base = kBootIdtAddress;
  sregs->idt.limit = 0;
  sregs->cr0 = kCr0Pe | kCr0Mp | kCr0Et | kCr0Ne | kCr0Pg;
  sregs->cr3 = kBootPml4Address;
  sregs->cr4 = kCr4Pae;
  sregs->efer = kEferLme | kEferLma;
  if (absl::Status s = SetSregs(*sregs); !s.ok()) return s;

  kvm_regs regs{};
  regs.rflags = 0x2;  // bit 1 is reserved-one; IF=0: interrupts disabled
  regs.rip = entry_rip;
  regs.rsi = zero_page_gpa;
  return SetRegs(regs);
}

absl::Status VirtualProcessor::SetupProtectedMode(std::span<uint8_t> low_memory,
                                                  uint32_t entry_eip,
                                                  uint32_t ebx) {
  if (low_memory.size() < kBootIdtAddress + 16) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "vp%d: protected-mode set-up needs guest RAM at [0, 0x%x), got 0x%x "
        "bytes",
        index_, kBootIdtAddress + 16, low_memory.size()));
  }
  const kvm_segment code = CodeSegment32();
  const kvm_segment data = DataSegment();
  Store64(low_memory, kBootGdtAddress + 0, 0);
  Store64(low_memory, kBootGdtAddress + 8, 0);
  Store64(low_memory, kBootGdtAddress + kBootCodeSelector, GdtEntry(code));
  Store64(low_memory, kBootGdtAddress + kBootDataSelector, GdtEntry(data));
  Store64(low_memory, kBootIdtAddress, 0);
  Store64(low_memory, kBootIdtAddress + 8, 0);

  absl::StatusOr<kvm_sregs> sregs = GetSregs();
  if (!sregs.ok()) return sregs.status();
  sregs->cs = code;
  sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
  // PVH: "tr: must be a 32-bit TSS (active) with a base of '0' and a limit
  // of '0x67'".
  kvm_segment tr{};
  tr.base = 0;
  tr.limit = 0x67;
  tr.selector = 0;
  tr.type = kTssBusy32;
  tr.present = 1;
  tr.s = 0;
  sregs->tr = tr;
  sregs->gdt.base = kBootGdtAddress;
  sregs->gdt.limit = kBootGdtEntries * 8 - 1;
  sregs->idt.base = kBootIdtAddress;
  sregs->idt.limit = 0;
  sregs->cr0 = kCr0Pe | kCr0Et;
  sregs->cr3 = 0;
  sregs->cr4 = 0;
  sregs->efer = 0;
  if (absl::Status s = SetSregs(*sregs); !s.ok()) return s;

  kvm_regs regs{};
  regs.rflags = 0x2;  // IF, TF and VM clear
  regs.rip = entry_eip;
  regs.rbx = ebx;
  return SetRegs(regs);
}

}  // namespace hvcore
