#include "vmms/worker_client.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace vmms {

absl::Status CallWorker(const std::string& socket_path, absl::Duration timeout,
                        const std::function<grpc::Status(
                            hvstack::internal::WorkerService::Stub& stub,
                            grpc::ClientContext* context)>& call) {
  auto channel = grpc::CreateChannel("unix:" + socket_path,
                                     grpc::InsecureChannelCredentials());
  auto stub = hvstack::internal::WorkerService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  grpc::Status status = call(*stub, &context);
  if (status.ok()) return absl::OkStatus();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::Status(
          static_cast<absl::StatusCode>(status.error_code()),
          absl::StrCat("worker at ", socket_path,
                       " did not answer: ", status.error_message()));
    default:
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
  }
}

absl::StatusOr<hvstack::internal::WorkerStatus> QueryWorkerStatus(
    const std::string& socket_path, absl::Duration timeout) {
  hvstack::internal::WorkerStatus status;
  absl::Status s =
      CallWorker(socket_path, timeout,
                 [&](hvstack::internal::WorkerService::Stub& stub,
                     grpc::ClientContext* context) {
                   return stub.GetStatus(
                       context, hvstack::internal::GetStatusRequest(), &status);
                 });
  if (!s.ok()) return s;
  return status;
}

}  // namespace vmms
