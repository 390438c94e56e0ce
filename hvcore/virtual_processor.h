#ifndef HVSTACK_HVCORE_VIRTUAL_PROCESSOR_H_
#define HVSTACK_HVCORE_VIRTUAL_PROCESSOR_H_

#include <linux/kvm.h>
#include <pthread.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/scoped_fd.h"
#include "hvcore/saved_state.pb.h"

namespace hvcore {

class Partition;

// ---- Intercepts: why KVM_RUN returned.
// -------------------------------------------------------

// IN/OUT (or INS/OUTS with `count` > 1). `data` is the transfer buffer inside
// kvm_run: size * count bytes, little-endian elements. For OUT, it holds the
// guest's values (`value` is the first element, for convenience); for IN, the
// caller fills it before the next Run().
struct PortIo {
  uint16_t port;
  uint8_t size;  // 1, 2 or 4
  bool is_write;
  uint32_t count;
  uint32_t value;
  std::span<uint8_t> data;
};

// An access to a guest-physical address with no RAM behind it. `data` is
// kvm_run's buffer (`len` bytes): for writes it holds the guest's bytes, for
// reads the caller fills it before Run().
struct Mmio {
  uint64_t gpa;
  uint8_t len;  // 1..8
  bool is_write;
  std::span<uint8_t> data;
};

// Triple fault.
struct Shutdown {
  uint64_t rip;
};

// HLT with no in-kernel irqchip.
struct Halt {};

// KVM could not emulate an instruction. `bytes` are up to 15 bytes starting at
// `rip`; `source` says where they came from ("kvm" when KVM reported them,
// "guest memory" when read through KVM_TRANSLATE, or "unavailable: <why>").
struct EmulationFailure {
  uint64_t rip;
  std::vector<uint8_t> bytes;
  std::string source;
};

// Any other KVM_EXIT_INTERNAL_ERROR.
struct InternalError {
  uint32_t suberror;
  std::vector<uint64_t> data;
  uint64_t rip;
};

// KVM_EXIT_SYSTEM_EVENT: KVM_SYSTEM_EVENT_SHUTDOWN / RESET / CRASH ...
struct SystemEvent {
  uint32_t type;
  std::vector<uint64_t> data;
};

// KVM_RUN returned EINTR: RequestExit() (immediate_exit + kick signal) or
// another signal.
struct Interrupted {};

// KVM_EXIT_FAIL_ENTRY: the hardware (or kvm_pvm) refused the VP state.
struct FailEntry {
  uint64_t hardware_entry_failure_reason;
  uint32_t cpu;
};

// An exit reason this code does not decode.
struct Unknown {
  uint32_t exit_reason;
};

// RDMSR / WRMSR of an MSR the partition's MSR filter sends to userspace
// (PartitionOptions::hyperv: 0x40000000-0x400001FF). The handler answers
// through the pointers, which point into kvm_run and are valid until the next
// Run(): `*data` is the value read, `*error` = 1 makes the instruction #GP.
struct MsrRead {
  uint32_t index;
  uint64_t* data;
  uint8_t* error;
};
struct MsrWrite {
  uint32_t index;
  uint64_t value;
  uint8_t* error;
};

// New alternatives go at the end: counters are indexed by position.
using Intercept = std::variant<PortIo, Mmio, Shutdown, Halt, EmulationFailure,
                               InternalError, SystemEvent, Interrupted,
                               FailEntry, Unknown, MsrRead, MsrWrite>;

// Short names for logs and counters, in Intercept's alternative order.
inline constexpr std::array<const char*, std::variant_size_v<Intercept>>
    kInterceptNames = {
        "port_io",           "mmio",           "shutdown",     "halt",
        "emulation_failure", "internal_error", "system_event", "interrupted",
        "fail_entry",        "unknown",        "msr_read",     "msr_write"};

// Formats an intercept for logs / crash details, e.g.
// "emulation failure at rip=0x100123: bytes f0 48 0f c7 0e (from kvm)".
std::string DescribeIntercept(const Intercept& intercept);

// ---- VirtualProcessor
// --------------------------------------------------------------------------

// One vcpu: its fd and its mapped kvm_run. Run() and the register accessors
// must be called from one thread at a time (the VP's thread); RequestExit() may
// be called from any thread.
class VirtualProcessor {
 public:
  // Used by Partition::CreateVp.
  static absl::StatusOr<std::unique_ptr<VirtualProcessor>> Create(
      Partition* partition, uint32_t index);
  VirtualProcessor(const VirtualProcessor&) = delete;
  VirtualProcessor& operator=(const VirtualProcessor&) = delete;
  ~VirtualProcessor();

  uint32_t index() const { return index_; }
  int fd() const { return fd_.get(); }

  // Enters the guest until the next intercept. Data for an IN or MMIO read
  // returned by the previous call must have been written into that intercept's
  // `data` before calling again. Errors are host-side failures (e.g. KVM_RUN
  // returned EFAULT), not guest behaviour.
  absl::StatusOr<Intercept> Run();

  // Makes the current or next Run() return Interrupted promptly: sets
  // kvm_run->immediate_exit and, if a thread is inside KVM_RUN, sends it
  // kVpKickSignal. Thread-safe. The flag is cleared when Run() returns
  // Interrupted, so callers must keep their own "why" (stop, pause...) state
  // and check it after every Run().
  void RequestExit();

  // Reads guest memory at a linear (virtual) address through the guest's own
  // page tables (KVM_TRANSLATE, page by page). On failure, `bytes_read` (if
  // given) says how many leading bytes of `out` are valid. For diagnostics, not
  // for hot paths.
  absl::Status ReadLinear(uint64_t linear, std::span<uint8_t> out,
                          size_t* bytes_read = nullptr) const;

  absl::StatusOr<kvm_regs> GetRegs() const;
  absl::Status SetRegs(const kvm_regs& regs);
  absl::StatusOr<kvm_sregs> GetSregs() const;
  absl::Status SetSregs(const kvm_sregs& sregs);
  absl::Status SetCpuid(std::span<const kvm_cpuid_entry2> entries);
  // KVM_GET_CPUID2: the table KVM actually keeps, which is not always what
  // SetCpuid gave it (kvm_pvm rewrites leaf 1 ECX and re-adds leaf 0xD).
  absl::StatusOr<std::vector<kvm_cpuid_entry2>> GetCpuid() const;

  // KVM_SET_MSRS; fails naming the first MSR KVM refused.
  absl::Status SetMsrs(std::span<const kvm_msr_entry> msrs);
  // KVM_GET_MSRS for one MSR.
  absl::StatusOr<uint64_t> GetMsr(uint32_t index) const;
  // KVM_GET_MP_STATE (KVM_MP_STATE_RUNNABLE, _UNINITIALIZED, _INIT_RECEIVED,
  // _HALTED, _SIPI_RECEIVED ...).
  absl::StatusOr<uint32_t> GetMpState() const;
  // Injects exception `vector` (KVM_SET_VCPU_EVENTS) to be delivered on the
  // next entry, with RIP as it is now (set RIP first for trap-like
  // exceptions such as #BP).
  absl::Status InjectException(uint8_t vector,
                               std::optional<uint32_t> error_code = {});

  // Completes an instruction this host's KVM rejected, where that is possible
  // and exact. Today: `int3` (0xCC; kvm_pvm's emulator rejects it): RIP moves
  // past it and #BP is injected, exactly what the CPU would have done (a trap:
  // the guest's handler sees the next RIP); `popcnt reg, reg` (F3 [66] [REX]
  // 0F B8, register source; kvm_pvm advertises POPCNT but cannot emulate it):
  // result and flags computed, RIP advanced; `clac` / `stac` at CPL 0 (SMAP,
  // likewise advertised but not emulated): RFLAGS.AC cleared / set; `fwait`:
  // a no-op unless CR0.TS+MP (#NM) or a pending x87 exception (#MF). Returns
  // false, changing nothing,
  // for any other instruction -- the caller then treats the failure as a
  // crash.
  absl::StatusOr<bool> CompleteRejectedInstruction(
      const EmulationFailure& failure);

  // ---- Save and restore (issue 14). Call from the VP's thread (or while no
  // thread runs it), with the VP out of KVM_RUN.

  // Everything KVM keeps for this VP: registers, segment/control registers,
  // XSAVE (else the FPU) and XCRs as this host offers them, every MSR of
  // KVM_GET_MSR_INDEX_LIST that KVM can read except the Hyper-V synthetic
  // range (userspace owns it), LAPIC, pending events, MP state, debug
  // registers. First completes what KVM finishes only on the next KVM_RUN
  // (the port I/O or MMIO access of the last intercept: RIP still points at
  // it until then) with a KVM_RUN under immediate_exit, so the state is
  // between two instructions and a restored VP does not repeat the access.
  absl::StatusOr<hvstack::saved::VpState> SaveState();
  // Puts `state` back, in the order KVM needs it (registers, XSAVE, XCRs,
  // sregs with APIC base, MSRs, LAPIC, events, MP state, TSC deadline, debug
  // registers). Every structure is checked for its exact size first;
  // InvalidArgument names the one that is wrong, and a value KVM refuses is
  // an error naming the ioctl (or the MSR).
  absl::Status RestoreState(const hvstack::saved::VpState& state);

  // Puts the VP in 64-bit long mode per Linux's 64-bit boot protocol: writes
  // the boot GDT and the 4 GiB identity page tables (addresses in
  // boot_layout.h) into `low_memory` -- the host mapping of guest-physical [0,
  // low_memory.size()), which must cover kBootReservedEnd -- and sets
  // CR0/CR3/CR4/EFER, segments (CS=0x10, others 0x18), RFLAGS=0x2 (interrupts
  // off), RIP=entry_rip, RSI=zero_page_gpa, everything else zero.
  absl::Status SetupLongMode(std::span<uint8_t> low_memory, uint64_t entry_rip,
                             uint64_t zero_page_gpa);

  // Puts the VP in 32-bit protected mode with paging off, as Xen's PVH boot
  // ABI (XEN_ELFNOTE_PHYS32_ENTRY) requires: writes a GDT at kBootGdtAddress
  // (null, null, 0x10 = flat 32-bit code, 0x18 = flat data; base 0, limit
  // 4 GiB) and an empty IDT into `low_memory`; CR0 = PE (+ET), CR4 = 0, EFER
  // = 0; CS = 0x10, DS/ES/FS/GS/SS = 0x18; TR a busy 32-bit TSS, base 0, limit
  // 0x67; EFLAGS = 0x2 (IF, TF, VM clear); EIP = entry_eip, EBX = ebx (the
  // hvm_start_info address), all other GPRs 0.
  absl::Status SetupProtectedMode(std::span<uint8_t> low_memory,
                                  uint32_t entry_eip, uint32_t ebx);

 private:
  VirtualProcessor(Partition* partition, uint32_t index, base::ScopedFd fd,
                   kvm_run* run, size_t run_size);
  Intercept DecodeEmulationFailure();
  uint64_t CurrentRip() const;

  Partition* const partition_;
  const uint32_t index_;
  base::ScopedFd fd_;
  kvm_run* const run_;  // mmap'd, run_size_ bytes; unmapped in the destructor
  const size_t run_size_;

  // The thread currently inside Run(), so RequestExit() can signal it; no
  // lock on the exit path. Run() publishes run_thread_, sets in_run_, and
  // after KVM_RUN clears it and waits until no RequestExit() is between its
  // check of in_run_ and its pthread_kill (kickers_), so pthread_kill never
  // targets a thread that has left Run() (and may have exited). Both sides
  // use sequentially consistent operations (a Dekker handshake: either the
  // kicker sees in_run_ == false, or Run() sees kickers_ != 0).
  std::atomic<bool> in_run_{false};
  std::atomic<pthread_t> run_thread_{};
  std::atomic<uint32_t> kickers_{0};
};

// The signal RequestExit() uses to knock a thread out of KVM_RUN. hvcore
// installs a no-op handler for it (without SA_RESTART) the first time a VP is
// created; nothing else in the process may use it.
int VpKickSignal();

}  // namespace hvcore

#endif  // HVSTACK_HVCORE_VIRTUAL_PROCESSOR_H_
