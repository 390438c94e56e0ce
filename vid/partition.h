#ifndef HVSTACK_VID_PARTITION_H_
#define HVSTACK_VID_PARTITION_H_

#include <time.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/scoped_fd.h"
#include "hvcore/boot_layout.h"
#include "hvcore/hyperv/hv_partition.h"
#include "hvcore/hyperv/seams.h"
#include "hvcore/kvm_system.h"
#include "hvcore/partition.h"
#include "hvcore/virtual_processor.h"
#include "vid/guest_memory.h"
#include "vid/io_dispatcher.h"
#include "vid/memory_file.h"
#include "vid/saved_state.pb.h"
#include "vid/synthetic_interface.h"

namespace vid {

struct PartitionConfig {
  // 1 .. KVM_CAP_MAX_VCPUS. Above KVM_CAP_NR_VCPUS (the host's CPU count) a
  // warning is logged: the VPs then share host CPUs.
  uint32_t vcpus = 1;
  // Non-zero multiple of 2 MiB. See GuestMemory for the guest-physical layout.
  uint64_t memory_bytes = 0;
  // Where KVM's paravirtual CPUID leaves (KVMKVMKVM, kvm-clock) go; see
  // hvcore/cpuid.h. Unused when enlightened.
  uint32_t kvm_cpuid_base = hvcore::kDefaultKvmCpuidBase;
  // The Hyper-V synthetic interface (hvcore/hyperv), as Hyper-V gives every
  // VM: Hyper-V CPUID leaves instead of KVM's, synthetic MSRs, the hypercall
  // page (its trap port kDefaultHypercallPort is reserved in io()), SynIC and
  // reference TSC. Guests that ignore CPUID run unchanged. See hyperv().
  bool enlightened = false;
  // Told when an enlightened guest reports a crash through the crash MSRs
  // (on a VP thread). May be null; must outlive the partition.
  hvcore::hyperv::GuestCrashHandler* crash_handler = nullptr;
  // Runs first on every VP thread, after the kick signal is unblocked and
  // before the VP's first KVM_RUN, with the VP's index. vmwp narrows the
  // thread's seccomp filter here (InstallThreadFilter(kVcpu)). An error ends
  // Run() as kCrashed with the message. May be empty.
  std::function<absl::Status(uint32_t vp_index)> on_vp_thread_start;
};

// How Run() ended.
struct RunOutcome {
  enum class Kind {
    kPowerOff,  // RequestPowerOff() (e.g. the ACPI PM1a S5 write) or a KVM
                // shutdown event
    kCrashed,   // emulation failure (other than a completed int3), internal
                // error, failed entry, host failure mid-run
    kStopped,   // RequestStop()
    kReboot,    // the guest asked for a reset: RequestReboot() (e.g. the i8042
                // pulsing its reset line, or a port 0xCF9 write), a KVM
                // reset system event, or a triple fault -- which is how a PC
                // resets itself, and how Linux's reboot=t and many firmware
                // resets work. The worker restarts the VM in place: Reset(),
                // load the kernel again, Prepare*, Run().
  };
  Kind kind;
  // Human-readable, e.g. "vp0: emulation failure at rip=0x100123: bytes f0 48
  // 0f c7 0e (from kvm)" or "vp0: triple fault (shutdown) at rip=0x100004".
  std::string detail;
};
absl::string_view RunOutcomeKindName(
    RunOutcome::Kind kind);  // "power_off", "crashed", "stopped", "reboot"

class Partition;

// A device's interrupt line: one GSI of the partition's in-kernel IOAPIC (and,
// for GSIs < 16, PIC), see hvcore/boot_layout.h for the routing. Cheap to
// copy; valid while the Partition lives (across Reset()). Thread-safe: call
// from device threads or VP threads. Errors are host-side ioctl failures
// (logged, rate-limited, by the partition) and can normally be ignored.
class InterruptLine {
 public:
  InterruptLine() = default;  // not connected: every call is a no-op

  // Level-triggered sources: Raise() while the condition holds, Lower() when
  // it clears. Edge-triggered (ISA) sources: Pulse(), or Raise() on the rising
  // edge and Lower() later -- the IOAPIC/PIC see the edge on Raise().
  absl::Status Raise();
  absl::Status Lower();
  absl::Status Pulse();  // Raise() then Lower()
  absl::Status Set(bool level);

  uint32_t gsi() const { return gsi_; }
  bool connected() const { return partition_ != nullptr; }

 private:
  friend class Partition;
  InterruptLine(Partition* partition, uint32_t gsi)
      : partition_(partition), gsi_(gsi) {}
  Partition* partition_ = nullptr;
  uint32_t gsi_ = 0;
};

inline constexpr size_t kNumInterceptKinds =
    std::variant_size_v<hvcore::Intercept>;

// Per-VP exit counters, indexed like hvcore::Intercept's alternatives (names in
// hvcore::kInterceptNames). Cheap enough to keep always on; divide wall time by
// exits to get the per-exit cost.
struct VpStats {
  uint32_t vp;
  std::array<uint64_t, kNumInterceptKinds> exits{};
  uint64_t total_exits = 0;
  // Emulation failures completed by hvcore (int3 -> #BP), included in
  // exits[emulation_failure].
  uint64_t completed_instructions = 0;
  // CPU time of the VP's thread (guest time and host-side handling) in the
  // current Run(), or in the last one once it returned.
  uint64_t cpu_time_ns = 0;
};

// The facade a worker drives: one partition, its memory, its VPs, and the I/O
// dispatch between its intercepts and the worker's devices.
//
// Typical use:
//   auto p = vid::Partition::Create({.vcpus = 1, .memory_bytes = 256 << 20},
//   *kvm);
//   (*p)->io().RegisterPortIo("com1", 0x3f8, 8, &uart);
//   load the kernel into (*p)->memory(), write the zero page at
//   hvcore::kBootZeroPageAddress
//   (*p)->PrepareBootVp(entry, hvcore::kBootZeroPageAddress);
//   absl::StatusOr<RunOutcome> outcome = (*p)->Run();   // blocks until a
//   terminal event
//
// VPs: one thread per VP inside Run(). VP 0 is the bootstrap processor and
// gets the entry state (PrepareBootVp or PrepareBootVpProtectedMode); the
// application processors wait inside KVM_RUN (KVM_MP_STATE_UNINITIALIZED)
// until the guest starts them with INIT/SIPI through its LAPIC, so a guest's
// real-mode trampoline works unchanged.
//
// Interrupts: KVM's in-kernel PIC, IOAPIC, LAPICs and PIT exist from Create();
// devices raise lines with SetIrqLine / InterruptLine and send MSIs with
// SignalMsi. HLT blocks inside the kernel until an interrupt arrives.
class Partition {
 public:
  static absl::StatusOr<std::unique_ptr<Partition>> Create(
      const PartitionConfig& config, const hvcore::KvmSystem& kvm);
  // Adopts an open /dev/kvm descriptor (what vmwp receives from vmms).
  static absl::StatusOr<std::unique_ptr<Partition>> Create(
      const PartitionConfig& config, base::ScopedFd kvm_fd);

  Partition(const Partition&) = delete;
  Partition& operator=(const Partition&) = delete;
  ~Partition();

  GuestMemory& memory() { return *memory_; }
  IoDispatcher& io() { return io_; }
  uint32_t vp_count() const { return vcpus_; }

  // Puts VP 0 in 64-bit long mode at `entry_rip` with RSI = `zero_page_gpa`
  // (Linux 64-bit boot protocol). Writes the GDT and identity page tables at
  // the addresses in hvcore/boot_layout.h; the loader must not put anything
  // there except the zero page. Call before Run().
  absl::Status PrepareBootVp(
      uint64_t entry_rip,
      uint64_t zero_page_gpa = hvcore::kBootZeroPageAddress);

  // Puts VP 0 in 32-bit protected mode, paging off, at `entry_eip` with EBX =
  // `ebx_value`: the PVH entry (XEN_ELFNOTE_PHYS32_ENTRY; EBX = the
  // hvm_start_info's guest-physical address). Flat CS = 0x10 (32-bit code,
  // base 0, limit 4 GiB), DS/ES/FS/GS/SS = 0x18, TR a busy 32-bit TSS (base 0,
  // limit 0x67), CR4 = 0, EFER = 0, EFLAGS = 0x2. Writes its GDT and an empty
  // IDT at the addresses in hvcore/boot_layout.h (the page tables are not
  // written or needed). Call before Run(). Either Prepare* may be called; the
  // last one wins.
  absl::Status PrepareBootVpProtectedMode(uint32_t entry_eip,
                                          uint32_t ebx_value);

  // ---- Interrupts. Thread-safe (device threads, VP threads), also before
  // Run() and between Reset() and Run().

  // Drives `gsi` (0-23) to `level` (KVM_IRQ_LINE).
  absl::Status SetIrqLine(uint32_t gsi, bool level);
  // One MSI (KVM_SIGNAL_MSI): `address` 0xFEExxxxx (destination APIC id in
  // bits 19:12), `data` (vector in bits 7:0, delivery mode in 10:8).
  absl::Status SignalMsi(uint64_t address, uint32_t data);
  // A handle for a device to keep. InvalidArgument if `gsi` is not 0-23.
  absl::StatusOr<InterruptLine> GetInterruptLine(uint32_t gsi);

  // Runs every VP (one thread each), dispatching intercepts to io(), until
  // power-off, a reboot request, a crash or a stop; then stops every VP and
  // returns. Call once (per Reset()). Returns an error only for misuse (boot
  // VP not prepared, called twice) or when threads cannot be started;
  // failures while running are kCrashed.
  absl::StatusOr<RunOutcome> Run();

  // All may be called from any thread, before or during Run(), including from
  // a device handler on a VP thread. The first terminal event wins; later ones
  // are ignored.
  void RequestPowerOff(absl::string_view reason = "guest requested power off");
  void RequestStop(absl::string_view reason = "stop requested");
  // A reset request (i8042 reset line, port 0xCF9, ACPI reset register): Run()
  // returns kReboot.
  void RequestReboot(absl::string_view reason = "guest requested reset");
  // The guest cannot go on (e.g. it reported its own crash and the VM's policy
  // ends it): Run() returns kCrashed with `detail`.
  void RequestCrash(absl::string_view detail);

  // Back to power-on after Run() returned (normally kReboot): a fresh KVM VM
  // and VPs (new in-kernel irqchip, PIT, LAPICs, CPUID, MSRs, TSC = 0), RAM
  // zeroed (pages returned to the host). Kept: this object, memory() (same
  // host mapping and guest-physical layout), io() registrations and
  // InterruptLine handles. Devices reset their own state. Then load the
  // kernel, Prepare*, and Run() again. FailedPrecondition while Run() is
  // in progress.
  absl::Status Reset();

  // Pause: every VP thread leaves KVM_RUN (kicked) and is held before its
  // next entry; returns once all are held. Guest memory, registers and
  // in-kernel device state stay as they are, so Resume() continues the guest
  // where it was. Devices here act only on VP accesses, so held VPs leave
  // them quiet; interrupts raised meanwhile stay pending in the irqchip. The
  // guest's clocks keep running. FailedPrecondition unless Run() is in
  // progress; DeadlineExceeded (nothing held) if the VPs are not all held
  // within `timeout`. Pausing a paused partition is OK. A terminal request
  // (stop, power-off) ends a paused Run() as usual.
  absl::Status Pause(absl::Duration timeout = absl::Seconds(5));
  // Pause without waiting for it, safe on a VP thread (inside a device
  // handler, where Pause() would wait for its own thread): every VP is held
  // before its next entry, the calling one as soon as its handler returns.
  // paused() turns true once all are held. Ignored unless Run() is in
  // progress; Resume() ends it as usual.
  void RequestPause();
  // Lets held VPs enter the guest again. No-op unless paused.
  void Resume();
  bool paused() const;

  std::vector<VpStats> GetVpStats() const;

  // The synthetic interface, if enlightened (else null): attach VMBus to its
  // connections(), post messages and signal events from any thread; log
  // stats() at the end. Lives as long as the partition (Reset() resets it).
  hvcore::hyperv::HvPartition* hyperv() {
    return synthetic_ != nullptr ? &synthetic_->hv() : nullptr;
  }
  // The partition's reference time now (100 ns since creation, what the
  // guest reads from TIME_REF_COUNT); 0 if not enlightened. Any thread.
  uint64_t ReferenceTime() {
    return synthetic_ != nullptr
               ? synthetic_->hv().clock().At(synthetic_->ReadGuestTsc())
               : 0;
  }

  // ---- Save and restore (issue 14; partition_state.cc).

  // The partition's state: KVM's (each VP's on its own thread, which is held
  // meanwhile) and the synthetic interface's. Needs the partition paused
  // while Run() is in progress (FailedPrecondition otherwise); before Run()
  // or after it returned, the VPs are read on the calling thread. Devices
  // are the caller's (vmwp), guest memory goes to SaveMemory.
  absl::StatusOr<hvstack::saved::VidPartitionState> SaveState();
  // Writes guest memory to `fd` (vid/memory_file.h), tagged with `save_id`.
  // Same preconditions as SaveState.
  absl::StatusOr<MemorySaveStats> SaveMemory(int fd, const SaveId& save_id);
  // A partition built from a saved state instead of a boot: `memory` (from
  // LoadMemoryFile) becomes its RAM, the VPs, irqchip, PIT, clocks and the
  // synthetic interface get `state` back, and Run() continues the guest
  // (no Prepare* needed). `config` must describe the same partition
  // (vcpus, memory size, enlightenment) and the host must give the same
  // CPUID and TSC frequency: FailedPrecondition naming the field otherwise.
  static absl::StatusOr<std::unique_ptr<Partition>> Restore(
      const PartitionConfig& config, const hvcore::KvmSystem& kvm,
      const hvstack::saved::VidPartitionState& state,
      std::unique_ptr<GuestMemory> memory);
  static constexpr uint32_t kStateVersion = 1;

  // Lower layers, for what the facade does not cover yet (e.g. debugging
  // registers). Replaced by Reset(): do not keep references across it.
  hvcore::Partition& hv_partition() { return *hv_; }
  hvcore::VirtualProcessor& vp(uint32_t index) { return *vps_.at(index); }

 private:
  struct VpState {
    std::array<std::atomic<uint64_t>, kNumInterceptKinds> exits{};
    std::atomic<uint64_t> completed{0};
    // The VP thread's CPU clock while it runs; its final reading once it
    // ended (a thread's clock is gone with the thread).
    mutable absl::Mutex cpu_mu;
    std::optional<clockid_t> cpu_clock ABSL_GUARDED_BY(cpu_mu);
    uint64_t cpu_ns_final ABSL_GUARDED_BY(cpu_mu) = 0;
  };
  struct Vm {
    std::unique_ptr<hvcore::Partition> hv;
    std::vector<std::unique_ptr<hvcore::VirtualProcessor>> vps;
  };

  Partition(const PartitionConfig& config,
            std::unique_ptr<hvcore::KvmSystem> kvm,
            std::unique_ptr<GuestMemory> memory);
  // Create with the given (or, if null, fresh) guest memory.
  static absl::StatusOr<std::unique_ptr<Partition>> CreateWith(
      const PartitionConfig& config, const hvcore::KvmSystem& kvm,
      std::unique_ptr<GuestMemory> memory);
  // Runs `fn(index)` for every VP: on its own held thread while Run() is in
  // progress (the partition must be paused), else on this thread. Returns
  // the first error.
  absl::Status RunOnEachVp(const std::function<absl::Status(uint32_t)>& fn);
  absl::Status RestoreFrom(const hvstack::saved::VidPartitionState& state);
  // Creates the KVM VM, maps memory, creates the VPs.
  absl::StatusOr<Vm> CreateVm();
  // Enlightened: the HvPartition and its seams, the hypercall port reserved.
  absl::Status SetUpSyntheticInterface();
  // Records the outcome if none is recorded yet, and kicks every VP out of
  // KVM_RUN.
  void Finish(RunOutcome::Kind kind, std::string detail);
  // Pause()/RequestPause(): marks the request; false when all VPs are held
  // already (nothing to do).
  bool SetPauseRequestedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes every VP leave KVM_RUN soon (immediate_exit + a signal).
  void KickAllVps();
  bool finished() const { return finished_.load(std::memory_order_acquire); }
  void VpLoop(uint32_t index);
  // Holds the calling VP thread while a pause is requested (and the
  // partition has not finished).
  void HoldWhilePaused(uint32_t index);
  // Handles one intercept; returns false when the VP must stop.
  bool HandleIntercept(uint32_t index, hvcore::Intercept& intercept);

  const PartitionConfig config_;
  const uint32_t vcpus_;
  // Kept for Reset(): a fresh VM needs the system fd.
  std::unique_ptr<hvcore::KvmSystem> kvm_;

  // Declaration order is destruction order reversed: VPs go first, then the VM
  // fd, and the guest memory KVM had mapped is unmapped last.
  std::unique_ptr<GuestMemory> memory_;
  // hv_ and vps_ are replaced only by Reset(), never while Run() is in
  // progress; SetIrqLine/SignalMsi read hv_ under hv_mu_ because device
  // threads may call them at any time.
  mutable absl::Mutex hv_mu_;
  std::unique_ptr<hvcore::Partition> hv_;
  IoDispatcher io_;
  std::vector<std::unique_ptr<hvcore::VirtualProcessor>> vps_;
  // Enlightened partitions only; after hv_ and vps_ so it is destroyed
  // first (its injector calls SignalMsi).
  std::unique_ptr<SyntheticInterface> synthetic_;
  // The hypercall port's reservation in io_ (reads all ones, writes dropped:
  // only a 4-byte OUT is a hypercall).
  std::unique_ptr<PortIoHandler> hypercall_port_reservation_;
  std::unique_ptr<VpState[]> vp_state_;

  std::atomic<bool> finished_{false};
  mutable absl::Mutex mu_;
  std::optional<RunOutcome> outcome_ ABSL_GUARDED_BY(mu_);
  bool ran_ ABSL_GUARDED_BY(mu_) = false;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool boot_vp_prepared_ ABSL_GUARDED_BY(mu_) = false;
  // Pause(): requested, and how many VP threads are held.
  bool pause_requested_ ABSL_GUARDED_BY(mu_) = false;
  uint32_t held_vps_ ABSL_GUARDED_BY(mu_) = 0;
  // RunOnEachVp: the function held VP threads run, and per VP whether it ran
  // and how it went.
  const std::function<absl::Status(uint32_t)>* vp_task_ ABSL_GUARDED_BY(mu_) =
      nullptr;
  std::vector<bool> vp_task_done_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Status> vp_task_status_ ABSL_GUARDED_BY(mu_);
  // Mirrors pause_requested_ for the VP loop's lock-free check.
  std::atomic<bool> pause_hint_{false};
  // Rate limit for interrupt ioctl failure logs.
  std::atomic<uint32_t> irq_errors_logged_{0};
};

}  // namespace vid

#endif  // HVSTACK_VID_PARTITION_H_
