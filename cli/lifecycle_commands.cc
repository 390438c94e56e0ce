// vmctl pause, resume, reset, reboot, shutdown, update, autostart, stats,
// hostinfo.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "cli/call_support.h"
#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/output.h"
#include "cli/stats_output.h"

namespace vmctl {
namespace {

template <typename Message>
int Print(Session& session, const grpc::Status& status, const Message& message,
          std::string (*format)(const Message&)) {
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(message) : format(message));
  return kExitOk;
}

template <typename Request, typename Method>
int ByName(Session& session, const std::string& name, Method method,
           std::chrono::seconds deadline) {
  Request request;
  request.set_name(name);
  grpc::ClientContext context;
  SetDeadline(context, deadline);
  hvstack::v1::Vm vm;
  grpc::Status status = ((*session.stub).*method)(&context, request, &vm);
  return Print(session, status, vm, &FormatVm);
}

std::string Absolute(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

}  // namespace

int PauseCommand(Session& session, const std::string& name) {
  return ByName<hvstack::v1::PauseVmRequest>(
      session, name, &hvstack::v1::VmService::StubInterface::PauseVm,
      kQuickDeadline);
}

int SaveCommand(Session& session, const std::string& name) {
  // Writing guest memory takes as long as the disk needs.
  return ByName<hvstack::v1::SaveVmRequest>(
      session, name, &hvstack::v1::VmService::StubInterface::SaveVm,
      std::chrono::seconds(900));
}

int DiscardSavedCommand(Session& session, const std::string& name) {
  return ByName<hvstack::v1::DiscardSavedStateRequest>(
      session, name, &hvstack::v1::VmService::StubInterface::DiscardSavedState,
      kQuickDeadline);
}

int ResumeCommand(Session& session, const std::string& name) {
  return ByName<hvstack::v1::ResumeVmRequest>(
      session, name, &hvstack::v1::VmService::StubInterface::ResumeVm,
      kQuickDeadline);
}

int ResetCommand(Session& session, const std::string& name) {
  return ByName<hvstack::v1::ResetVmRequest>(
      session, name, &hvstack::v1::VmService::StubInterface::ResetVm,
      kWorkerDeadline);
}

int RebootCommand(Session& session, const std::string& name) {
  return ByName<hvstack::v1::RebootVmRequest>(
      session, name, &hvstack::v1::VmService::StubInterface::RebootVm,
      kWorkerDeadline);
}

int ShutdownCommand(Session& session, const std::string& name,
                    double timeout_seconds, bool force_after) {
  hvstack::v1::ShutdownVmRequest request;
  request.set_name(name);
  const auto nanos = static_cast<int64_t>(timeout_seconds * 1e9);
  request.mutable_timeout()->set_seconds(nanos / 1000000000);
  request.mutable_timeout()->set_nanos(
      static_cast<int32_t>(nanos % 1000000000));
  request.set_fallback(force_after
                           ? hvstack::v1::ShutdownVmRequest::FALLBACK_FORCE_OFF
                           : hvstack::v1::ShutdownVmRequest::FALLBACK_FAIL);
  grpc::ClientContext context;
  // vmms waits up to the timeout, then maybe stops the worker (a few s).
  SetDeadline(context,
              std::chrono::seconds(static_cast<int64_t>(timeout_seconds) + 30));
  hvstack::v1::Vm vm;
  grpc::Status status = session.stub->ShutdownVm(&context, request, &vm);
  return Print(session, status, vm, &FormatVm);
}

int UpdateCommand(Session& session, const std::string& name,
                  const UpdateArgs& args) {
  hvstack::v1::UpdateVmRequest request;
  request.set_name(name);
  hvstack::v1::VmConfig* config = request.mutable_config();
  auto* mask = request.mutable_update_mask();
  if (args.cpus) {
    config->set_vcpus(*args.cpus);
    mask->add_paths("vcpus");
  }
  if (args.memory_mib) {
    config->set_memory_mib(*args.memory_mib);
    mask->add_paths("memory_mib");
  }
  if (args.kernel) {
    config->set_kernel_path(Absolute(*args.kernel));
    mask->add_paths("kernel_path");
  }
  if (args.cmdline) {
    config->set_cmdline(*args.cmdline);
    mask->add_paths("cmdline");
  }
  if (args.initrd) {
    config->set_initrd_path(args.initrd->empty() ? "" : Absolute(*args.initrd));
    mask->add_paths("initrd_path");
  }
  if (args.autostart) {
    config->set_autostart(*args.autostart);
    mask->add_paths("autostart");
  }
  if (args.restart_policy) {
    config->set_restart_policy(*args.restart_policy);
    mask->add_paths("restart_policy");
  }
  if (args.on_guest_crash) {
    config->set_on_guest_crash(*args.on_guest_crash);
    mask->add_paths("on_guest_crash");
  }
  if (mask->paths_size() == 0) {
    *session.err << "vmctl: update: give at least one field to change "
                    "(--memory, --cpus, --kernel, --cmdline, --initrd, "
                    "--autostart, --restart-policy, --on-guest-crash)\n";
    return kExitUsage;
  }
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  hvstack::v1::Vm vm;
  grpc::Status status = session.stub->UpdateVm(&context, request, &vm);
  return Print(session, status, vm, &FormatVm);
}

int AutostartCommand(Session& session, const std::string& name, bool on) {
  UpdateArgs args;
  args.autostart = on;
  return UpdateCommand(session, name, args);
}

bool ParseRestartPolicy(const std::string& text,
                        hvstack::v1::RestartPolicy* policy) {
  if (text == "never") {
    *policy = hvstack::v1::RESTART_POLICY_NEVER;
  } else if (text == "on-failure") {
    *policy = hvstack::v1::RESTART_POLICY_ON_FAILURE;
  } else if (text == "always") {
    *policy = hvstack::v1::RESTART_POLICY_ALWAYS;
  } else {
    return false;
  }
  return true;
}

bool ParseGuestCrashPolicy(const std::string& text,
                           hvstack::v1::GuestCrashPolicy* policy) {
  if (text == "stop") {
    *policy = hvstack::v1::GUEST_CRASH_POLICY_STOP;
  } else if (text == "restart") {
    *policy = hvstack::v1::GUEST_CRASH_POLICY_RESTART;
  } else if (text == "preserve") {
    *policy = hvstack::v1::GUEST_CRASH_POLICY_PRESERVE;
  } else {
    return false;
  }
  return true;
}

int StatsCommand(Session& session, const std::string& name) {
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  if (name.empty()) {
    hvstack::v1::ListVmStatsResponse all;
    grpc::Status status = session.stub->ListVmStats(
        &context, hvstack::v1::ListVmStatsRequest(), &all);
    return Print(session, status, all, &FormatStatsTable);
  }
  hvstack::v1::GetVmStatsRequest request;
  request.set_name(name);
  hvstack::v1::VmStats stats;
  grpc::Status status = session.stub->GetVmStats(&context, request, &stats);
  return Print(session, status, stats, &FormatStats);
}

int HostInfoCommand(Session& session) {
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  hvstack::v1::HostInfo info;
  grpc::Status status = session.stub->GetHostInfo(
      &context, hvstack::v1::GetHostInfoRequest(), &info);
  return Print(session, status, info, &FormatHostInfo);
}

}  // namespace vmctl
