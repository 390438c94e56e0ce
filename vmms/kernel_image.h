#ifndef HVSTACK_VMMS_KERNEL_IMAGE_H_
#define HVSTACK_VMMS_KERNEL_IMAGE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace vmms {

// Checks that `path` names a kernel image vmwp can load into a guest with
// `memory_mib` of RAM. INVALID_ARGUMENT names the field, the path and the
// problem.
//
// This is the single place vmms asks that question, and it asks vmwp's own
// loader (ProbeKernelImage, which reads only headers and needs no KVM), so vmms
// and vmwp can never disagree about what is loadable.
absl::Status ValidateKernelImage(const std::string& path, uint64_t memory_mib);

}  // namespace vmms

#endif  // HVSTACK_VMMS_KERNEL_IMAGE_H_
