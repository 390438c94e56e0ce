#ifndef HVSTACK_CLI_CALL_SUPPORT_H_
#define HVSTACK_CLI_CALL_SUPPORT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <optional>

#include "cli/commands.h"

namespace vmctl {

// Calls that only touch vmms's database.
inline constexpr std::chrono::seconds kQuickDeadline{15};
// Calls that wait for a worker: start, stop, reset, reboot (vmms gives a
// worker's start 30 s).
inline constexpr std::chrono::seconds kWorkerDeadline{90};

// Sets `timeout`, or the one the user gave with `--request-timeout`.
void SetDeadline(grpc::ClientContext& context, std::chrono::seconds timeout);
// `vmctl --request-timeout S`: one deadline for every call, for hosts where
// vmms and its workers run far slower than the defaults assume (nested
// emulation, an overloaded machine). Set once, before any call; nullopt
// brings the defaults back.
void OverrideRequestTimeout(std::optional<std::chrono::seconds> timeout);

// Prints a failed call's status the way every command does (with a hint when
// vmms cannot be reached) and returns the documented exit code for it.
int Fail(Session& session, const grpc::Status& status);

}  // namespace vmctl

#endif  // HVSTACK_CLI_CALL_SUPPORT_H_
