#ifndef HVSTACK_VMMS_VALIDATION_H_
#define HVSTACK_VMMS_VALIDATION_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
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

// A value from a request as messages show it: quoted, C-escaped and, past 96
// bytes, cut with its length. Error messages travel in gRPC trailers, which
// clients cap at a few KiB: echoing a huge request back would turn a clear
// INVALID_ARGUMENT into the client's RESOURCE_EXHAUSTED.
std::string Quoted(absl::string_view value);

// GetKvp/SetKvp: the key (and value) fit the KVP message (255 and 1023 UTF-16
// characters). INVALID_ARGUMENT naming the field and its size.
absl::Status ValidateKvpSizes(absl::string_view key, absl::string_view value);

// Bounds of vcpus and memory, the kernel image (absolute path, loadable) and
// the initrd (see ValidateInitrd). INVALID_ARGUMENT names the field, the value
// and the rule.
absl::Status ValidateVmConfig(const hvstack::v1::VmConfig& config);

// An empty initrd_path, or an absolute path of an existing, readable regular
// file. INVALID_ARGUMENT naming the path and what is wrong with it.
absl::Status ValidateInitrd(const hvstack::v1::VmConfig& config);

// ValidateVmConfig also checks restart_policy (a known value).

// UpdateVm: `mask` names VmConfig fields (vcpus, memory_mib, kernel_path,
// cmdline, initrd_path, autostart, restart_policy), each once, at least one.
// Returns `current` with the masked fields taken from `update`, checked like a
// new definition (ValidateVmConfig). INVALID_ARGUMENT names the path or field.
absl::StatusOr<hvstack::v1::VmConfig> ApplyConfigUpdate(
    const hvstack::v1::VmConfig& current, const hvstack::v1::VmConfig& update,
    const std::vector<std::string>& mask);

// ShutdownVm: an unset timeout is the default; a set one is 1 ms .. 1 h.
// INVALID_ARGUMENT naming the value.
absl::StatusOr<absl::Duration> ValidateShutdownTimeout(bool has_timeout,
                                                       int64_t seconds,
                                                       int32_t nanos);

}  // namespace vmms

#endif  // HVSTACK_VMMS_VALIDATION_H_
