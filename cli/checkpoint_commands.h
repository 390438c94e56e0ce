#ifndef HVSTACK_CLI_CHECKPOINT_COMMANDS_H_
#define HVSTACK_CLI_CHECKPOINT_COMMANDS_H_

#include <string>

#include "cli/commands.h"
#include "proto/hvstack/v1/vm.pb.h"

// vmctl's checkpoint commands (issue 14): `vmctl checkpoint
// create|list|apply|delete NAME [CHECKPOINT]`.
namespace vmctl {

// Prints the new checkpoint as one table row.
int CheckpointCreateCommand(Session& session, const std::string& name,
                            const std::string& checkpoint);
// The tree: NAME PARENT STATE CREATED, the current one marked with '*',
// children indented under their parent.
int CheckpointListCommand(Session& session, const std::string& name);
// Prints the VM like show.
int CheckpointApplyCommand(Session& session, const std::string& name,
                           const std::string& checkpoint);
// Prints the remaining tree.
int CheckpointDeleteCommand(Session& session, const std::string& name,
                            const std::string& checkpoint);

// The `checkpoint list` tree.
std::string FormatCheckpointTree(
    const hvstack::v1::ListCheckpointsResponse& checkpoints);

}  // namespace vmctl

#endif  // HVSTACK_CLI_CHECKPOINT_COMMANDS_H_
