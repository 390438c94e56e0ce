#ifndef HVSTACK_VMWP_SAVED_CONFIG_H_
#define HVSTACK_VMWP_SAVED_CONFIG_H_

// The part of a VM's configuration its guest has seen, recorded in a saved
// state and checked again at restore (issue 14). Apart from saved_vm.h so
// that the state-file fuzz target (tests/fuzz/state) can link it without vid.

#include "absl/status/status.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "vmwp/saved_state.pb.h"

namespace vmwp {

// What of `config` a saved VM must find again at restore.
hvstack::saved::SavedConfig SavedConfigOf(
    const hvstack::internal::WorkerConfig& config);
// FailedPrecondition naming the first field of `config` that differs from
// what the VM was saved with ("vcpus: the saved VM had 2, its configuration
// now says 4"), so a restore never starts a guest on other hardware.
absl::Status CheckSavedConfig(const hvstack::saved::SavedConfig& saved,
                              const hvstack::internal::WorkerConfig& config);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_SAVED_CONFIG_H_
