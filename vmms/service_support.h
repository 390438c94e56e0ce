#ifndef HVSTACK_VMMS_SERVICE_SUPPORT_H_
#define HVSTACK_VMMS_SERVICE_SUPPORT_H_

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <string>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

// What every VmService handler file shares.
namespace vmms {

// absl and gRPC share the canonical code numbering.
inline grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

// How long a modifying request waits for another one on the same VM: its
// own deadline, at most 10 min.
inline absl::Time OpDeadline(const grpc::ServerContext* context) {
  return std::min(absl::FromChrono(context->deadline()),
                  absl::Now() + absl::Minutes(10));
}

}  // namespace vmms

#endif  // HVSTACK_VMMS_SERVICE_SUPPORT_H_
