#include "vmms/op_lock.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace vmms {

absl::StatusOr<VmOpLocks::Guard> VmOpLocks::Acquire(
    const std::string& vm, const std::string& operation, absl::Time deadline) {
  struct Free {
    VmOpLocks* locks;
    const std::string* vm;
    static bool Check(Free* f) ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return !f->locks->held_.contains(*f->vm);
    }
  } free{this, &vm};
  absl::MutexLock lock(&mu_);
  if (!mu_.AwaitWithDeadline(absl::Condition(&Free::Check, &free), deadline)) {
    const Held& held = held_.at(vm);
    return absl::DeadlineExceededError(absl::StrCat(
        "VM '", vm, "': operation '", held.operation, "' in progress (for ",
        absl::FormatDuration(
            absl::Trunc(absl::Now() - held.since, absl::Milliseconds(1))),
        "); '", operation, "' waited until its deadline; retry later"));
  }
  held_.emplace(vm, Held{operation, absl::Now()});
  return Guard(this, vm);
}

std::string VmOpLocks::Current(const std::string& vm) {
  absl::MutexLock lock(&mu_);
  auto it = held_.find(vm);
  return it == held_.end() ? std::string() : it->second.operation;
}

void VmOpLocks::Release(const std::string& vm) {
  absl::MutexLock lock(&mu_);
  held_.erase(vm);
}

}  // namespace vmms
