#ifndef HVSTACK_VMMS_VMWP_LOCATOR_H_
#define HVSTACK_VMMS_VMWP_LOCATOR_H_

#include <string>

#include "absl/status/statusor.h"

namespace vmms {

// Finds the vmwp executable, in this order:
//   1. `flag_value` (--vmwp), when not empty: used as given, never
//   second-guessed;
//   2. $HVSTACK_VMWP (tests point vmms at a freshly built or fake worker);
//   3. "vmwp" next to the running vmms (an installed layout);
//   4. "../vmwp/vmwp" relative to the vmms binary (bazel-bin/vmms/vmms ->
//   bazel-bin/vmwp/vmwp).
// FAILED_PRECONDITION lists every place looked at.
absl::StatusOr<std::string> LocateVmwp(const std::string& flag_value);

}  // namespace vmms

#endif  // HVSTACK_VMMS_VMWP_LOCATOR_H_
