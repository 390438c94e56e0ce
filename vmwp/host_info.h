#ifndef HVSTACK_VMWP_HOST_INFO_H_
#define HVSTACK_VMWP_HOST_INFO_H_

#include <string>

#include "absl/status/statusor.h"
#include "proto/hvstack/internal/worker.pb.h"

namespace vmwp {

// `vmwp --host-info`: opens `kvm_device` and reports the API version, limits
// and a list of capabilities, so that vmms can answer GetHostInfo without
// talking to KVM itself. Errors name the device.
absl::StatusOr<hvstack::internal::HostKvmInfo> ProbeHostKvm(
    const std::string& kvm_device);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_HOST_INFO_H_
