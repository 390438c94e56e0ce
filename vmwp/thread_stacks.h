#ifndef HVSTACK_VMWP_THREAD_STACKS_H_
#define HVSTACK_VMWP_THREAD_STACKS_H_

#include <cstddef>

#include "absl/status/status.h"

namespace vmwp {

// The stack every thread of the worker gets unless it asks otherwise.
// glibc's default is RLIMIT_STACK (8 MiB here); with transparent huge pages
// on, the first touch of such a stack can fault in a whole 2 MiB page, which
// made each of an idle worker's busiest threads cost 2 MiB of RSS. A stack
// below 2 MiB cannot hold a huge page, and 1 MiB is far more than any worker
// thread uses (VP loops, device threads, gRPC's pollers).
inline constexpr size_t kWorkerThreadStackBytes = size_t{1} << 20;

// Makes kWorkerThreadStackBytes the default for threads created from now on
// (std::thread, gRPC's and spdlog's threads). Call before any thread exists;
// the fork server's children inherit it.
absl::Status LimitDefaultThreadStacks();

}  // namespace vmwp

#endif  // HVSTACK_VMWP_THREAD_STACKS_H_
