#include "vmms/vm_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "vmms/console_proxy.h"
#include "vmms/disk_image.h"
#include "vmms/disk_table.h"
#include "vmms/event_stream.h"
#include "vmms/guest_integration.h"
#include "vmms/log_format.h"
#include "vmms/nic_backend.h"
#include "vmms/nic_config.h"
#include "vmms/request_peer.h"
#include "vmms/service_support.h"
#include "vmms/uuid.h"
#include "vmms/validation.h"

namespace vmms {
namespace {

template <typename T>
grpc::Status Respond(const absl::StatusOr<T>& result, T* response) {
  if (!result.ok()) return ToGrpc(result.status());
  *response = *result;
  return grpc::Status::OK;
}

// Every reply that carries a VM shows it the same way GetVm does.
grpc::Status RespondVm(VmManager& vms, const absl::StatusOr<Vm>& result,
                       Vm* response) {
  if (!result.ok()) return ToGrpc(result.status());
  *response = vms.ForReply(*result);
  return grpc::Status::OK;
}

// A disk from a request, checked (CheckDiskImage) and given its serial.
// The address is assigned by the store (AssignDiskAddress).
absl::StatusOr<hvstack::v1::Disk> PrepareDisk(const hvstack::v1::Disk& disk,
                                              const std::string& field) {
  if (!disk.serial().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".serial is assigned by vmms: leave it empty"));
  }
  absl::StatusOr<hvstack::v1::Disk> checked = CheckDiskImage(disk, field);
  if (!checked.ok()) return checked.status();
  // 20 hex digits: a stable identity the guest sees (VPD page 0x80).
  std::string serial = NewUuidV4();
  serial.erase(std::remove(serial.begin(), serial.end(), '-'), serial.end());
  checked->set_serial(serial.substr(0, 20));
  return checked;
}

}  // namespace

grpc::Status VmServiceImpl::CreateVm(
    grpc::ServerContext* context, const hvstack::v1::CreateVmRequest* request,
    hvstack::v1::Vm* response) {
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "CreateVm", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  if (absl::Status s = ValidateVmConfig(request->config()); !s.ok())
    return ToGrpc(s);
  Vm vm;
  vm.set_name(request->name());
  vm.set_uuid(NewUuidV4());
  *vm.mutable_config() = request->config();
  // Disks: each image checked, addresses assigned in order.
  vm.mutable_config()->clear_disks();
  std::vector<hvstack::v1::Disk> disks;
  for (int i = 0; i < request->config().disks_size(); ++i) {
    const std::string field = absl::StrCat("config.disks[", i, "]");
    absl::StatusOr<hvstack::v1::Disk> disk =
        PrepareDisk(request->config().disks(i), field);
    if (!disk.ok()) return ToGrpc(disk.status());
    if (absl::Status s = AssignDiskAddress(disks, field, &*disk); !s.ok())
      return ToGrpc(s);
    disks.push_back(*disk);
    *vm.mutable_config()->add_disks() = *std::move(disk);
  }
  if (absl::Status s = NormalizeNics(*vm.mutable_config()); !s.ok())
    return ToGrpc(s);
  for (int i = 0; i < vm.config().nics_size(); ++i) {
    if (absl::Status s = CheckNicBridge(vm.config().nics(i),
                                        absl::StrCat("config.nics[", i, "]"));
        !s.ok()) {
      return ToGrpc(s);
    }
  }
  grpc::Status status = RespondVm(*vms_, vms_->Create(vm), response);
  if (status.ok()) FillNicStatuses(*response);
  return status;
}

grpc::Status VmServiceImpl::GetVm(grpc::ServerContext*,
                                  const hvstack::v1::GetVmRequest* request,
                                  hvstack::v1::Vm* response) {
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<Vm> vm = vms_->Describe(request->name());
  if (!vm.ok()) return ToGrpc(vm.status());
  *response = *std::move(vm);
  FillNicStatuses(*response);
  // The guest's integration components, while a worker runs: what vmms last
  // read from the worker (IntegrationCache). A read never waits on a worker,
  // least of all on one that is going away.
  if (response->state() == hvstack::v1::VM_STATE_RUNNING ||
      response->state() == hvstack::v1::VM_STATE_PAUSED) {
    absl::StatusOr<ConsoleSource> source = vms_->Console(request->name());
    if (source.ok() && source->worker_socket.has_value()) {
      if (response->config().disable_enlightenments()) {
        response->mutable_integration()->set_enlightened(false);
      } else {
        *response->mutable_integration() =
            integration_.Get(response->uuid(), source->worker_generation,
                             *source->worker_socket);
      }
    }
  }
  return grpc::Status::OK;
}

absl::StatusOr<std::string> VmServiceImpl::RunningWorkerSocket(
    const std::string& name) {
  absl::StatusOr<Vm> vm = store_->Get(name);
  if (!vm.ok()) return vm.status();
  absl::StatusOr<ConsoleSource> source = vms_->Console(name);
  if (!source.ok()) return source.status();
  if (vm->config().backend() == hvstack::v1::BACKEND_LIBVIRT) {
    return absl::FailedPreconditionError(absl::StrCat(
        "VM '", name,
        "' runs on libvirt: key-value exchange is a service of hvstack's own "
        "worker (Hyper-V integration), not of libvirt's QEMU"));
  }
  if (!source->worker_socket.has_value() ||
      vm->state() != hvstack::v1::VM_STATE_RUNNING) {
    return absl::FailedPreconditionError(absl::StrCat(
        "VM '", name, "' is ", StateName(vm->state()),
        ": key-value exchange needs the guest running; start it (or resume "
        "it) first"));
  }
  return *source->worker_socket;
}

grpc::Status VmServiceImpl::GetKvp(grpc::ServerContext*,
                                   const hvstack::v1::GetKvpRequest* request,
                                   hvstack::v1::KvpItem* response) {
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<uint32_t> pool = KvpPoolNumber(request->pool());
  if (!pool.ok()) return ToGrpc(pool.status());
  if (request->key().empty()) {
    return ToGrpc(absl::InvalidArgumentError("GetKvp: the key is empty"));
  }
  if (absl::Status s = ValidateKvpSizes(request->key(), ""); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<std::string> socket = RunningWorkerSocket(request->name());
  if (!socket.ok()) return ToGrpc(socket.status());
  absl::StatusOr<std::string> value =
      WorkerGetKvp(request->name(), *socket, *pool, request->key());
  if (!value.ok()) return ToGrpc(value.status());
  response->set_key(request->key());
  response->set_value(*value);
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::SetKvp(grpc::ServerContext* context,
                                   const hvstack::v1::SetKvpRequest* request,
                                   hvstack::v1::SetKvpResponse*) {
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "SetKvp", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<uint32_t> pool = KvpPoolNumber(request->pool());
  if (!pool.ok()) return ToGrpc(pool.status());
  if (*pool > 1) {
    return ToGrpc(absl::InvalidArgumentError(
        "SetKvp: the host writes the external or the guest pool; the auto "
        "pools belong to the guest"));
  }
  if (request->key().empty()) {
    return ToGrpc(absl::InvalidArgumentError("SetKvp: the key is empty"));
  }
  if (absl::Status s = ValidateKvpSizes(request->key(), request->value());
      !s.ok()) {
    return ToGrpc(s);
  }
  absl::StatusOr<std::string> socket = RunningWorkerSocket(request->name());
  if (!socket.ok()) return ToGrpc(socket.status());
  absl::Status s = WorkerSetKvp(request->name(), *socket, *pool, request->key(),
                                request->value());
  if (s.ok()) {
    spdlog::info("VM {}: KVP pool {} key '{}' set by {}", request->name(),
                 *pool, request->key(), *peer);
  }
  return ToGrpc(s);
}

grpc::Status VmServiceImpl::ListKvp(grpc::ServerContext*,
                                    const hvstack::v1::ListKvpRequest* request,
                                    hvstack::v1::ListKvpResponse* response) {
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<uint32_t> pool = KvpPoolNumber(request->pool());
  if (!pool.ok()) return ToGrpc(pool.status());
  absl::StatusOr<std::string> socket = RunningWorkerSocket(request->name());
  if (!socket.ok()) return ToGrpc(socket.status());
  return Respond(WorkerListKvp(request->name(), *socket, *pool), response);
}

grpc::Status VmServiceImpl::AttachDisk(
    grpc::ServerContext* context, const hvstack::v1::AttachDiskRequest* request,
    hvstack::v1::Vm* response) {
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "AttachDisk", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  // An unknown VM is NOT_FOUND before its disk is looked at.
  if (absl::StatusOr<Vm> vm = store_->Get(request->name()); !vm.ok())
    return ToGrpc(vm.status());
  if (!request->has_disk()) {
    return ToGrpc(
        absl::InvalidArgumentError("disk is missing: give at least its path"));
  }
  absl::StatusOr<hvstack::v1::Disk> disk = PrepareDisk(request->disk(), "disk");
  if (!disk.ok()) return ToGrpc(disk.status());
  return Respond(vms_->AttachDisk(request->name(), *disk, OpDeadline(context)),
                 response);
}

grpc::Status VmServiceImpl::DetachDisk(
    grpc::ServerContext* context, const hvstack::v1::DetachDiskRequest* request,
    hvstack::v1::Vm* response) {
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "DetachDisk", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  if (request->path().empty() && !request->has_address()) {
    return ToGrpc(absl::InvalidArgumentError(
        "name the disk to detach: its path or its address"));
  }
  if (!request->path().empty() && request->has_address()) {
    return ToGrpc(absl::InvalidArgumentError(
        "name the disk to detach by its path or by its address, not both"));
  }
  if (request->path().size() > 4096) {
    return ToGrpc(absl::InvalidArgumentError(
        absl::StrCat("path ", Quoted(request->path()), " is too long")));
  }
  return Respond(vms_->DetachDisk(request->name(), request->path(),
                                  request->address(), OpDeadline(context)),
                 response);
}

grpc::Status VmServiceImpl::ListVms(grpc::ServerContext*,
                                    const hvstack::v1::ListVmsRequest*,
                                    hvstack::v1::ListVmsResponse* response) {
  absl::StatusOr<std::vector<Vm>> vms = store_->List();
  if (!vms.ok()) return ToGrpc(vms.status());
  for (Vm& vm : *vms) *response->add_vms() = std::move(vm);
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::StartVm(grpc::ServerContext* context,
                                    const hvstack::v1::StartVmRequest* request,
                                    hvstack::v1::Vm* response) {
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "StartVm", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  return RespondVm(*vms_, vms_->Start(request->name(), OpDeadline(context)),
                   response);
}

grpc::Status VmServiceImpl::StopVm(grpc::ServerContext* context,
                                   const hvstack::v1::StopVmRequest* request,
                                   hvstack::v1::Vm* response) {
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "StopVm", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  return RespondVm(*vms_, vms_->Stop(request->name()), response);
}

grpc::Status VmServiceImpl::DeleteVm(
    grpc::ServerContext* context, const hvstack::v1::DeleteVmRequest* request,
    google::protobuf::Empty*) {
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "DeleteVm", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  return ToGrpc(vms_->Delete(request->name(), OpDeadline(context)));
}

grpc::Status VmServiceImpl::PauseVm(grpc::ServerContext* context,
                                    const hvstack::v1::PauseVmRequest* request,
                                    hvstack::v1::Vm* response) {
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "PauseVm", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  return RespondVm(*vms_, vms_->Pause(request->name(), OpDeadline(context)),
                   response);
}

grpc::Status VmServiceImpl::SaveVm(grpc::ServerContext* context,
                                   const hvstack::v1::SaveVmRequest* request,
                                   hvstack::v1::Vm* response) {
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "SaveVm", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  return RespondVm(*vms_, vms_->Save(request->name(), OpDeadline(context)),
                   response);
}

grpc::Status VmServiceImpl::DiscardSavedState(
    grpc::ServerContext* context,
    const hvstack::v1::DiscardSavedStateRequest* request,
    hvstack::v1::Vm* response) {
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "DiscardSavedState", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  return RespondVm(*vms_,
                   vms_->DiscardSaved(request->name(), OpDeadline(context)),
                   response);
}

grpc::Status VmServiceImpl::ResumeVm(
    grpc::ServerContext* context, const hvstack::v1::ResumeVmRequest* request,
    hvstack::v1::Vm* response) {
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "ResumeVm", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  return RespondVm(*vms_, vms_->Resume(request->name(), OpDeadline(context)),
                   response);
}

grpc::Status VmServiceImpl::ResetVm(grpc::ServerContext* context,
                                    const hvstack::v1::ResetVmRequest* request,
                                    hvstack::v1::Vm* response) {
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "ResetVm", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  return RespondVm(*vms_, vms_->Reset(request->name(), OpDeadline(context)),
                   response);
}

grpc::Status VmServiceImpl::RebootVm(
    grpc::ServerContext* context, const hvstack::v1::RebootVmRequest* request,
    hvstack::v1::Vm* response) {
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "RebootVm", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  return RespondVm(*vms_, vms_->Reboot(request->name(), OpDeadline(context)),
                   response);
}

grpc::Status VmServiceImpl::ShutdownVm(
    grpc::ServerContext* context, const hvstack::v1::ShutdownVmRequest* request,
    hvstack::v1::Vm* response) {
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "ShutdownVm", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  absl::StatusOr<absl::Duration> timeout = ValidateShutdownTimeout(
      request->has_timeout(), request->timeout().seconds(),
      request->timeout().nanos());
  if (!timeout.ok()) return ToGrpc(timeout.status());
  if (!hvstack::v1::ShutdownVmRequest::Fallback_IsValid(request->fallback())) {
    return ToGrpc(absl::InvalidArgumentError(
        absl::StrCat("fallback ", request->fallback(),
                     " is not a ShutdownVmRequest.Fallback (FORCE_OFF = 1, "
                     "FAIL = 2)")));
  }
  ShutdownOptions options;
  options.timeout = *timeout;
  options.force_off_fallback =
      request->fallback() != hvstack::v1::ShutdownVmRequest::FALLBACK_FAIL;
  return RespondVm(
      *vms_,
      vms_->GracefulShutdown(request->name(), options, OpDeadline(context)),
      response);
}

grpc::Status VmServiceImpl::UpdateVm(
    grpc::ServerContext* context, const hvstack::v1::UpdateVmRequest* request,
    hvstack::v1::Vm* response) {
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "UpdateVm", request->name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  absl::StatusOr<Vm> vm = store_->Get(request->name());
  if (!vm.ok()) return ToGrpc(vm.status());
  std::vector<std::string> paths(request->update_mask().paths().begin(),
                                 request->update_mask().paths().end());
  if (vm->libvirt().adopted()) {
    // An adopted domain's hardware is libvirt's: refused before the merged
    // config is checked (it has no kernel of vmms's).
    for (const std::string& path : paths) {
      if (path == "autostart" || path == "restart_policy") continue;
      absl::Status s =
          vms_->CheckHardwareChange(*vm, vm->config(), "its hardware");
      if (!s.ok()) return ToGrpc(s);
    }
  }
  absl::StatusOr<hvstack::v1::VmConfig> merged =
      ApplyConfigUpdate(vm->config(), request->config(), paths);
  if (!merged.ok()) return ToGrpc(merged.status());
  return RespondVm(
      *vms_, vms_->Update(request->name(), *merged, paths, OpDeadline(context)),
      response);
}

NextWorker VmServiceImpl::NextWorkerOf(const std::string& name) {
  return [this, name](uint64_t generation) -> std::optional<WorkerEndpoint> {
    // A fresh worker is ready within a start timeout or not at all.
    std::optional<ConsoleSource> next =
        vms_->NextConsole(name, generation, absl::Seconds(30));
    if (!next.has_value() || !next->worker_socket.has_value())
      return std::nullopt;
    return WorkerEndpoint{*next->worker_socket, next->worker_generation};
  };
}

grpc::Status VmServiceImpl::GetVmStats(
    grpc::ServerContext*, const hvstack::v1::GetVmStatsRequest* request,
    hvstack::v1::VmStats* response) {
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<Vm> vm = store_->Get(request->name());
  if (!vm.ok()) return ToGrpc(vm.status());
  *response = vms_->Stats(*vm, stats_worker_timeout_);
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::ListVmStats(
    grpc::ServerContext*, const hvstack::v1::ListVmStatsRequest*,
    hvstack::v1::ListVmStatsResponse* response) {
  absl::StatusOr<std::vector<Vm>> vms = store_->List();
  if (!vms.ok()) return ToGrpc(vms.status());
  for (hvstack::v1::VmStats& stats :
       vms_->ListStats(*vms, stats_worker_timeout_)) {
    *response->add_stats() = std::move(stats);
  }
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::GetHostInfo(grpc::ServerContext*,
                                        const hvstack::v1::GetHostInfoRequest*,
                                        hvstack::v1::HostInfo* response) {
  absl::StatusOr<hvstack::v1::HostInfo> info = host_info_.Get();
  if (info.ok()) {
    *response = *std::move(info);
  } else if (libvirt_ != nullptr) {
    // libvirt's VMs do not need our KVM facts: say what is missing.
    response->set_kvm_error(std::string(info.status().message()));
  } else {
    return ToGrpc(info.status());
  }
  if (libvirt_ != nullptr) libvirt_->FillHostInfo(response);
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::StreamConsole(
    grpc::ServerContext* context,
    const hvstack::v1::StreamConsoleRequest* request,
    grpc::ServerWriter<hvstack::v1::ConsoleChunk>* writer) {
  if (absl::Status s = ValidateVmName(request->name()); !s.ok())
    return ToGrpc(s);
  absl::StatusOr<ConsoleSource> source = vms_->Console(request->name());
  if (!source.ok()) return ToGrpc(source.status());
  // Without follow, the console log is the answer whether or not a worker
  // runs: the worker writes it before its ring, and unlike the ring of the
  // current worker it holds every boot since the VM started (a guest reboot
  // gets a fresh worker with an empty ring).
  if (source->feed != nullptr && request->follow()) {
    FollowConsoleFeed(*source->feed, context,
                      [writer](const hvstack::v1::ConsoleChunk& c) {
                        return writer->Write(c);
                      });
    return grpc::Status::OK;
  }
  if (source->worker_socket.has_value() && request->follow()) {
    FollowWorkerConsoles({*source->worker_socket, source->worker_generation},
                         request->follow(), source->console_log,
                         NextWorkerOf(request->name()), context,
                         [writer](const hvstack::v1::ConsoleChunk& c) {
                           return writer->Write(c);
                         });
    return grpc::Status::OK;
  }
  SendRetainedConsole(source->console_log,
                      [writer](const hvstack::v1::ConsoleChunk& c) {
                        return writer->Write(c);
                      });
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::AttachConsole(grpc::ServerContext* context,
                                          AttachStream* stream) {
  hvstack::v1::AttachConsoleRequest first;
  if (!stream->Read(&first)) return grpc::Status::OK;  // Closed at once.
  // Input reaches the guest: a change like any other.
  absl::StatusOr<std::string> peer =
      access_->AuthorizeChange(context, "AttachConsole", first.name());
  if (!peer.ok()) return ToGrpc(peer.status());
  ScopedRequestPeer as_caller(*peer);
  if (absl::Status s = ValidateVmName(first.name()); !s.ok()) return ToGrpc(s);
  absl::StatusOr<ConsoleSource> source = vms_->Console(first.name());
  if (!source.ok()) return ToGrpc(source.status());
  if (source->feed != nullptr) {
    AttachConsoleFeed(*source->feed, first, context, stream);
    return grpc::Status::OK;
  }
  if (source->worker_socket.has_value()) {
    AttachWorkerConsole({*source->worker_socket, source->worker_generation},
                        source->console_log, first, NextWorkerOf(first.name()),
                        context, stream);
    return grpc::Status::OK;
  }
  // No worker: what the VM wrote last time, then the end. Input is discarded
  // until the client closes its side.
  auto write = [stream](const hvstack::v1::ConsoleChunk& c) {
    return stream->Write(c);
  };
  SendRetainedConsole(source->console_log, write);
  hvstack::v1::ConsoleChunk ended;
  ended.set_ended(true);
  if (!stream->Write(ended)) return grpc::Status::OK;
  absl::Notification closed;
  std::thread drain([&] {
    hvstack::v1::AttachConsoleRequest ignored;
    while (stream->Read(&ignored)) {
    }
    closed.Notify();
  });
  if (!closed.WaitForNotificationWithTimeout(kAttachCloseGrace))
    context->TryCancel();
  drain.join();
  return grpc::Status::OK;
}

grpc::Status VmServiceImpl::WatchEvents(
    grpc::ServerContext* context,
    const hvstack::v1::WatchEventsRequest* request,
    grpc::ServerWriter<hvstack::v1::VmEvent>* writer) {
  return ToGrpc(StreamEvents(
      *store_, *request, [context] { return context->IsCancelled(); },
      [writer](const hvstack::v1::VmEvent& event) {
        return writer->Write(event);
      }));
}

}  // namespace vmms
