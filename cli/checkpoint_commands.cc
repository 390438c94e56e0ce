#include "cli/checkpoint_commands.h"

#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/call_support.h"
#include "cli/exit_codes.h"
#include "cli/output.h"

namespace vmctl {
namespace {

// Checkpoint operations copy or rebase disk images: more than a quick call.
constexpr std::chrono::seconds kCheckpointDeadline{600};

std::string StateWord(hvstack::v1::VmState state) {
  return state == hvstack::v1::VM_STATE_SAVED ? "saved" : "off";
}

}  // namespace

std::string FormatCheckpointTree(
    const hvstack::v1::ListCheckpointsResponse& checkpoints) {
  if (checkpoints.checkpoints().empty()) return "no checkpoints\n";
  std::map<std::string, std::vector<const hvstack::v1::Checkpoint*>> children;
  for (const hvstack::v1::Checkpoint& c : checkpoints.checkpoints())
    children[c.parent()].push_back(&c);
  std::string out = "  CHECKPOINT (state, created)\n";
  std::function<void(const std::string&, int)> walk =
      [&](const std::string& parent, int depth) {
        for (const hvstack::v1::Checkpoint* c : children[parent]) {
          absl::StrAppend(
              &out, c->current() ? "* " : "  ", std::string(2 * depth, ' '),
              c->name(), " (", StateWord(c->vm_state()), ", ",
              google::protobuf::util::TimeUtil::ToString(c->create_time()),
              ")\n");
          walk(c->name(), depth + 1);
        }
      };
  walk("", 0);
  absl::StrAppend(&out, "(* = current: new checkpoints branch from it)\n");
  return out;
}

int CheckpointCreateCommand(Session& session, const std::string& name,
                            const std::string& checkpoint) {
  hvstack::v1::CreateCheckpointRequest request;
  request.set_name(name);
  request.set_checkpoint(checkpoint);
  grpc::ClientContext context;
  SetDeadline(context, kCheckpointDeadline);
  hvstack::v1::Checkpoint created;
  grpc::Status status =
      session.stub->CreateCheckpoint(&context, request, &created);
  if (!status.ok()) return Fail(session, status);
  if (session.json) {
    *session.out << FormatJson(created);
  } else {
    *session.out << "checkpoint " << created.name() << " of VM " << name
                 << " created ("
                 << (created.parent().empty()
                         ? std::string("a root")
                         : absl::StrCat("parent ", created.parent()))
                 << ", VM " << StateWord(created.vm_state()) << ")\n";
  }
  return kExitOk;
}

int CheckpointListCommand(Session& session, const std::string& name) {
  hvstack::v1::ListCheckpointsRequest request;
  request.set_name(name);
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  hvstack::v1::ListCheckpointsResponse response;
  grpc::Status status =
      session.stub->ListCheckpoints(&context, request, &response);
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(response)
                                : FormatCheckpointTree(response));
  return kExitOk;
}

int CheckpointApplyCommand(Session& session, const std::string& name,
                           const std::string& checkpoint) {
  hvstack::v1::ApplyCheckpointRequest request;
  request.set_name(name);
  request.set_checkpoint(checkpoint);
  grpc::ClientContext context;
  SetDeadline(context, kCheckpointDeadline);
  hvstack::v1::Vm vm;
  grpc::Status status = session.stub->ApplyCheckpoint(&context, request, &vm);
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(vm) : FormatVm(vm));
  return kExitOk;
}

int CheckpointDeleteCommand(Session& session, const std::string& name,
                            const std::string& checkpoint) {
  hvstack::v1::DeleteCheckpointRequest request;
  request.set_name(name);
  request.set_checkpoint(checkpoint);
  grpc::ClientContext context;
  SetDeadline(context, kCheckpointDeadline);
  hvstack::v1::ListCheckpointsResponse rest;
  grpc::Status status =
      session.stub->DeleteCheckpoint(&context, request, &rest);
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(rest)
                                : FormatCheckpointTree(rest));
  return kExitOk;
}

}  // namespace vmctl
