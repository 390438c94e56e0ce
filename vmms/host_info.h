#ifndef HVSTACK_VMMS_HOST_INFO_H_
#define HVSTACK_VMMS_HOST_INFO_H_

#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "proto/hvstack/v1/vm.pb.h"

namespace vmms {

// GetHostInfo. vmms does not talk to KVM (see README "Must not depend on"):
// the KVM part comes from `vmwp --host-info --kvm-device=<device>`, run once
// and cached (KVM's limits do not change while the module is loaded); the
// host's CPUs, memory and kernel come from sysconf/uname at each call.
class HostInfoProvider {
 public:
  HostInfoProvider(std::string vmwp_flag, std::string kvm_device)
      : vmwp_flag_(std::move(vmwp_flag)), kvm_device_(std::move(kvm_device)) {}

  // UNAVAILABLE naming the device and vmwp's message when the probe fails
  // (then tried again on the next call).
  absl::StatusOr<hvstack::v1::HostInfo> Get();

 private:
  absl::StatusOr<hvstack::v1::HostInfo> ProbeKvm();

  const std::string vmwp_flag_;
  const std::string kvm_device_;
  absl::Mutex mu_;
  std::optional<hvstack::v1::HostInfo> kvm_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vmms

#endif  // HVSTACK_VMMS_HOST_INFO_H_
