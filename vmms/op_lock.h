#ifndef HVSTACK_VMMS_OP_LOCK_H_
#define HVSTACK_VMMS_OP_LOCK_H_

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace vmms {

// One modifying operation per VM at a time. A second one waits for the first
// until its own deadline (the RPC's), then fails DEADLINE_EXCEEDED naming the
// operation in progress; different VMs never wait for each other. Reads take
// no lock. Thread-safe.
class VmOpLocks {
 public:
  // Releases the VM's lock when destroyed.
  class Guard {
   public:
    Guard(Guard&& other) noexcept
        : locks_(other.locks_), vm_(std::move(other.vm_)) {
      other.locks_ = nullptr;
    }
    Guard& operator=(Guard&&) = delete;
    ~Guard() {
      if (locks_ != nullptr) locks_->Release(vm_);
    }

   private:
    friend class VmOpLocks;
    Guard(VmOpLocks* locks, std::string vm)
        : locks_(locks), vm_(std::move(vm)) {}
    VmOpLocks* locks_;
    std::string vm_;
  };

  // Waits until no other operation holds `vm` (by name), at most until
  // `deadline`, then holds it for `operation` ("start", "pause", ...).
  absl::StatusOr<Guard> Acquire(const std::string& vm,
                                const std::string& operation,
                                absl::Time deadline);

  // The operation holding `vm`, or empty.
  std::string Current(const std::string& vm);

 private:
  struct Held {
    std::string operation;
    absl::Time since;
  };
  void Release(const std::string& vm);

  absl::Mutex mu_;
  std::map<std::string, Held> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vmms

#endif  // HVSTACK_VMMS_OP_LOCK_H_
