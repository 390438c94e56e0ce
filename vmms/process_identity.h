#ifndef HVSTACK_VMMS_PROCESS_IDENTITY_H_
#define HVSTACK_VMMS_PROCESS_IDENTITY_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "base/scoped_fd.h"

namespace vmms {

// Field 22 of /proc/<pid>/stat: the process's start time in clock ticks since
// boot. With the pid it identifies a process across vmms restarts (a recycled
// pid has another start time). nullopt when the process is gone or a zombie.
std::optional<int64_t> ProcessStartTicks(pid_t pid);

// pidfd_open(2): a descriptor that becomes readable (POLLIN) when the process
// exits, works for processes that are not our children, and signals exactly
// that process even after its pid is recycled.
absl::StatusOr<base::ScopedFd> OpenPidfd(pid_t pid);

// pidfd_send_signal(2); false (errno set) when it failed, e.g. already gone.
bool SignalPidfd(int pidfd, int signal);

// Blocks until the process behind `pidfd` has exited (poll for POLLIN).
void AwaitPidfdExit(int pidfd);

}  // namespace vmms

#endif  // HVSTACK_VMMS_PROCESS_IDENTITY_H_
