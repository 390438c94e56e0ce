#ifndef HVSTACK_VID_PARTITION_H_
#define HVSTACK_VID_PARTITION_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "base/scoped_fd.h"
#include "hvcore/boot_layout.h"
#include "hvcore/kvm_system.h"
#include "hvcore/partition.h"
#include "hvcore/virtual_processor.h"
#include "vid/guest_memory.h"
#include "vid/io_dispatcher.h"

namespace vid {

struct PartitionConfig {
  uint32_t vcpus = 1;
  // Non-zero multiple of 2 MiB. See GuestMemory for the guest-physical layout.
  uint64_t memory_bytes = 0;
};

// How Run() ended.
struct RunOutcome {
  enum class Kind {
    kPowerOff,  // RequestPowerOff() (e.g. the ACPI PM1a S5 write) or a KVM
                // shutdown event
    kCrashed,   // triple fault, emulation failure, internal error, host failure
                // mid-run
    kStopped,   // RequestStop()
  };
  Kind kind;
  // Human-readable, e.g. "vp0: emulation failure at rip=0x100123: bytes f0 48
  // 0f c7 0e (from kvm)" or "vp0: triple fault (shutdown) at rip=0x100004".
  std::string detail;
};
absl::string_view RunOutcomeKindName(
    RunOutcome::Kind kind);  // "power_off", "crashed", "stopped"

inline constexpr size_t kNumInterceptKinds =
    std::variant_size_v<hvcore::Intercept>;

// Per-VP exit counters, indexed like hvcore::Intercept's alternatives (names in
// hvcore::kInterceptNames). Cheap enough to keep always on; divide wall time by
// exits to get the per-exit cost.
struct VpStats {
  uint32_t vp;
  std::array<uint64_t, kNumInterceptKinds> exits{};
  uint64_t total_exits = 0;
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
// VPs: one thread per VP inside Run(). Only VPs given a start state run; today
// that is VP 0 via PrepareBootVp (application processors will be started by
// INIT/SIPI once the in-kernel LAPIC is wired, a later issue), the others stay
// parked.
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
  uint32_t vp_count() const { return static_cast<uint32_t>(vps_.size()); }

  // Puts VP 0 in 64-bit long mode at `entry_rip` with RSI = `zero_page_gpa`
  // (Linux 64-bit boot protocol). Writes the GDT and identity page tables at
  // the addresses in hvcore/boot_layout.h; the loader must not put anything
  // there except the zero page. Call before Run().
  absl::Status PrepareBootVp(
      uint64_t entry_rip,
      uint64_t zero_page_gpa = hvcore::kBootZeroPageAddress);

  // Runs the prepared VPs, dispatching intercepts to io(), until power-off, a
  // crash or a stop; then stops every VP and returns. Call once. Returns an
  // error only for misuse (no VP prepared, called twice) or when threads cannot
  // be started; failures while running are kCrashed.
  absl::StatusOr<RunOutcome> Run();

  // Both may be called from any thread, before or during Run(), including from
  // a device handler on a VP thread. The first terminal event wins; later ones
  // are ignored.
  void RequestPowerOff(absl::string_view reason = "guest requested power off");
  void RequestStop(absl::string_view reason = "stop requested");

  std::vector<VpStats> GetVpStats() const;

  // Lower layers, for what the facade does not cover yet (e.g. debugging
  // registers).
  hvcore::Partition& hv_partition() { return *hv_; }
  hvcore::VirtualProcessor& vp(uint32_t index) { return *vps_.at(index); }

 private:
  struct VpState {
    std::array<std::atomic<uint64_t>, kNumInterceptKinds> exits{};
    bool prepared = false;
  };

  Partition(std::unique_ptr<hvcore::Partition> hv,
            std::unique_ptr<GuestMemory> memory,
            std::vector<std::unique_ptr<hvcore::VirtualProcessor>> vps);
  // Records the outcome if none is recorded yet, and kicks every VP out of
  // KVM_RUN.
  void Finish(RunOutcome::Kind kind, std::string detail);
  bool finished() const { return finished_.load(std::memory_order_acquire); }
  void VpLoop(uint32_t index);
  // Handles one intercept; returns false when the VP must stop.
  bool HandleIntercept(uint32_t index, hvcore::Intercept& intercept);

  // Declaration order is destruction order reversed: VPs go first, then the VM
  // fd, and the guest memory KVM had mapped is unmapped last.
  std::unique_ptr<GuestMemory> memory_;
  std::unique_ptr<hvcore::Partition> hv_;
  IoDispatcher io_;
  std::vector<std::unique_ptr<hvcore::VirtualProcessor>> vps_;
  std::unique_ptr<VpState[]> vp_state_;

  std::atomic<bool> finished_{false};
  absl::Mutex mu_;
  std::optional<RunOutcome> outcome_ ABSL_GUARDED_BY(mu_);
  bool ran_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace vid

#endif  // HVSTACK_VID_PARTITION_H_
