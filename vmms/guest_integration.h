#ifndef HVSTACK_VMMS_GUEST_INTEGRATION_H_
#define HVSTACK_VMMS_GUEST_INTEGRATION_H_

// vmms's side of an enlightened guest's integration components: it asks the
// VM's worker (WorkerService.GetStatus / GetKvp / SetKvp / ListKvp on its
// socket) and translates to the public API. The worker does the VMBus work.

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "proto/hvstack/v1/vm.pb.h"

namespace vmms {

// The worker's GuestIntegration in public form ("5.3", channel names that are
// open and negotiated, OS and host name from the intrinsic items).
hvstack::v1::GuestIntegration ToPublicIntegration(
    const hvstack::internal::GuestIntegration& in);

// hv_kvp's pool number (0-4) for a public pool (UNSPECIFIED = EXTERNAL).
absl::StatusOr<uint32_t> KvpPoolNumber(hvstack::v1::KvpPool pool);

// GetStatus on `socket`, within `timeout`; on failure the result has only
// `error` set.
hvstack::v1::GuestIntegration QueryIntegration(const std::string& socket,
                                               absl::Duration timeout);

// The worker RPCs, with the guest's answer timeout plus a margin. Errors keep
// the worker's code and message, prefixed with the VM's name.
absl::StatusOr<std::string> WorkerGetKvp(const std::string& vm,
                                         const std::string& socket,
                                         uint32_t pool, const std::string& key);
absl::Status WorkerSetKvp(const std::string& vm, const std::string& socket,
                          uint32_t pool, const std::string& key,
                          const std::string& value);
absl::StatusOr<hvstack::v1::ListKvpResponse> WorkerListKvp(
    const std::string& vm, const std::string& socket, uint32_t pool);

}  // namespace vmms

#endif  // HVSTACK_VMMS_GUEST_INTEGRATION_H_
