#include "cli/commands.h"

#include <google/protobuf/empty.pb.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "cli/exit_codes.h"
#include "cli/output.h"

namespace vmctl {
namespace {

// Quick calls only touch the database; start and stop wait for a worker (vmms
// gives a start 30 s).
constexpr auto kQuickDeadline = std::chrono::seconds(15);
constexpr auto kWorkerDeadline = std::chrono::seconds(90);

void SetDeadline(grpc::ClientContext& context, std::chrono::seconds timeout) {
  context.set_deadline(std::chrono::system_clock::now() + timeout);
}

int Fail(Session& session, const grpc::Status& status) {
  std::string message = status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    message = absl::StrCat(
        "cannot reach vmms at unix:", session.socket_path,
        " (is vmms running? use --socket or $HVSTACK_SOCKET): ", message);
  }
  *session.err << "vmctl: " << StatusCodeName(status.error_code()) << ": "
               << message << "\n";
  return ExitCodeFor(status.error_code());
}

int PrintVm(Session& session, const grpc::Status& status,
            const hvstack::v1::Vm& vm) {
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(vm) : FormatVm(vm));
  return kExitOk;
}

}  // namespace

Session Connect(const std::string& socket_path, bool json, std::ostream& out,
                std::ostream& err) {
  auto channel = grpc::CreateChannel("unix:" + socket_path,
                                     grpc::InsecureChannelCredentials());
  return Session{socket_path, json, hvstack::v1::VmService::NewStub(channel),
                 &out, &err};
}

int CreateCommand(Session& session, const CreateArgs& args) {
  hvstack::v1::CreateVmRequest request;
  request.set_name(args.name);
  std::error_code ec;
  std::filesystem::path kernel = std::filesystem::absolute(args.kernel, ec);
  request.mutable_config()->set_kernel_path(
      ec ? args.kernel : kernel.lexically_normal().string());
  request.mutable_config()->set_memory_mib(args.memory_mib);
  request.mutable_config()->set_vcpus(args.cpus);
  request.mutable_config()->set_cmdline(args.cmdline);
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  hvstack::v1::Vm vm;
  return PrintVm(session, session.stub->CreateVm(&context, request, &vm), vm);
}

int ListCommand(Session& session) {
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  hvstack::v1::ListVmsResponse response;
  grpc::Status status =
      session.stub->ListVms(&context, hvstack::v1::ListVmsRequest(), &response);
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(response) : FormatTable(response));
  return kExitOk;
}

int ShowCommand(Session& session, const std::string& name) {
  hvstack::v1::GetVmRequest request;
  request.set_name(name);
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  hvstack::v1::Vm vm;
  return PrintVm(session, session.stub->GetVm(&context, request, &vm), vm);
}

int StartCommand(Session& session, const std::string& name) {
  hvstack::v1::StartVmRequest request;
  request.set_name(name);
  grpc::ClientContext context;
  SetDeadline(context, kWorkerDeadline);
  hvstack::v1::Vm vm;
  return PrintVm(session, session.stub->StartVm(&context, request, &vm), vm);
}

int StopCommand(Session& session, const std::string& name) {
  hvstack::v1::StopVmRequest request;
  request.set_name(name);
  grpc::ClientContext context;
  SetDeadline(context, kWorkerDeadline);
  hvstack::v1::Vm vm;
  return PrintVm(session, session.stub->StopVm(&context, request, &vm), vm);
}

int DeleteCommand(Session& session, const std::string& name) {
  hvstack::v1::DeleteVmRequest request;
  request.set_name(name);
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  google::protobuf::Empty empty;
  grpc::Status status = session.stub->DeleteVm(&context, request, &empty);
  if (!status.ok()) return Fail(session, status);
  if (session.json) *session.out << FormatJson(empty);
  return kExitOk;
}

int ConsoleCommand(Session& session, const std::string& name, bool follow) {
  hvstack::v1::StreamConsoleRequest request;
  request.set_name(name);
  request.set_follow(follow);
  grpc::ClientContext
      context;  // No deadline: following a console is open-ended.
  auto reader = session.stub->StreamConsole(&context, request);
  hvstack::v1::ConsoleChunk chunk;
  while (reader->Read(&chunk)) {
    session.out->write(chunk.data().data(),
                       static_cast<std::streamsize>(chunk.data().size()));
    session.out->flush();  // Interactive: show each chunk as it arrives.
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return Fail(session, status);
  return kExitOk;
}

}  // namespace vmctl
