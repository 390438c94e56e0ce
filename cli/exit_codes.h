#ifndef HVSTACK_CLI_EXIT_CODES_H_
#define HVSTACK_CLI_EXIT_CODES_H_

#include <grpcpp/support/status.h>

namespace vmctl {

// vmctl's documented exit codes (cli/README.md). Scripts branch on these, so
// they never change meaning.
enum ExitCode : int {
  kExitOk = 0,
  kExitUsage = 1,
  kExitNotFound = 2,
  kExitConflict =
      3,  // ALREADY_EXISTS or FAILED_PRECONDITION: the VM's state forbids it.
  kExitInvalidArgument = 4,
  kExitUnavailable = 5,  // vmms is not running (or not at that socket).
  kExitOther = 6,
};

ExitCode ExitCodeFor(grpc::StatusCode code);

// "NOT_FOUND", "INVALID_ARGUMENT", ...: the canonical spelling of a gRPC code.
const char* StatusCodeName(grpc::StatusCode code);

}  // namespace vmctl

#endif  // HVSTACK_CLI_EXIT_CODES_H_
