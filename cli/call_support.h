#ifndef HVSTACK_CLI_CALL_SUPPORT_H_
#define HVSTACK_CLI_CALL_SUPPORT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "cli/commands.h"

namespace vmctl {

// Calls that only touch vmms's database.
inline constexpr std::chrono::seconds kQuickDeadline{15};
// Calls that wait for a worker: start, stop, reset, reboot (vmms gives a
// worker's start 30 s).
inline constexpr std::chrono::seconds kWorkerDeadline{90};

void SetDeadline(grpc::ClientContext& context, std::chrono::seconds timeout);

// Prints a failed call's status the way every command does (with a hint when
// vmms cannot be reached) and returns the documented exit code for it.
int Fail(Session& session, const grpc::Status& status);

}  // namespace vmctl

#endif  // HVSTACK_CLI_CALL_SUPPORT_H_
