#ifndef HVSTACK_VMMS_KERNEL_IMAGE_H_
#define HVSTACK_VMMS_KERNEL_IMAGE_H_

#include <string>

#include "absl/status/status.h"

namespace vmms {

// Checks that `path` names a kernel image vmwp can load: a readable ELF64 little-endian x86-64
// executable. INVALID_ARGUMENT names the path and the problem.
//
// This is the single place vmms asks that question. It is a stopgap until vmwp/loader's
// KVM-free ProbeKernelImage() exists; then this function forwards to it, so that vmms and vmwp
// can never disagree about what is loadable.
absl::Status ValidateKernelImage(const std::string& path);

}  // namespace vmms

#endif  // HVSTACK_VMMS_KERNEL_IMAGE_H_
