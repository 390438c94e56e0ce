#ifndef HVSTACK_VMMS_VALIDATION_H_
#define HVSTACK_VMMS_VALIDATION_H_

#include <string>

#include "absl/status/status.h"
#include "proto/hvstack/v1/vm.pb.h"

namespace vmms {

inline constexpr uint32_t kMinVcpus = 1;
inline constexpr uint32_t kMaxVcpus = 64;
inline constexpr uint64_t kMinMemoryMib = 16;
inline constexpr uint64_t kMaxMemoryMib = 65536;

// DNS label rules: 1-63 characters of [a-z0-9-], starting and ending
// alphanumeric. The name ends up in paths, logs and (later) host names, so it
// is kept boring. INVALID_ARGUMENT states the rule.
absl::Status ValidateVmName(const std::string& name);

// Bounds of vcpus and memory, the kernel image (absolute path, loadable) and
// the initrd (see ValidateInitrd). INVALID_ARGUMENT names the field, the value
// and the rule.
absl::Status ValidateVmConfig(const hvstack::v1::VmConfig& config);

// An empty initrd_path, or an absolute path of an existing, readable regular
// file. INVALID_ARGUMENT naming the path and what is wrong with it.
absl::Status ValidateInitrd(const hvstack::v1::VmConfig& config);

}  // namespace vmms

#endif  // HVSTACK_VMMS_VALIDATION_H_
