#ifndef HVSTACK_VMMS_VM_SERVICE_H_
#define HVSTACK_VMMS_VM_SERVICE_H_

#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "vmms/access_control.h"
#include "vmms/console_proxy.h"
#include "vmms/guest_integration.h"
#include "vmms/host_info.h"
#include "vmms/integration_cache.h"
#include "vmms/libvirt_backend.h"
#include "vmms/vm_manager.h"
#include "vmms/vm_store.h"

namespace vmms {

// The public VmService: validates requests, then hands them to the store
// (reads of definitions) or the VM manager (anything that involves a VM's
// backend). Errors carry canonical codes whose messages name the VM, field or
// state involved.
class VmServiceImpl final : public hvstack::v1::VmService::Service {
 public:
  // Every request that changes something asks `access` first (see
  // access_control.h) and writes its rows as that caller (request_peer.h).
  // GetHostInfo runs `vmwp_flag`'s vmwp (LocateVmwp) on `kvm_device`.
  // `libvirt` (may be null) adds the libvirt backend's connection to
  // GetHostInfo.
  VmServiceImpl(VmStore* store, VmManager* vms, AccessControl* access,
                const std::string& vmwp_flag, const std::string& kvm_device,
                LibvirtBackend* libvirt = nullptr)
      : store_(store),
        vms_(vms),
        access_(access),
        libvirt_(libvirt),
        host_info_(vmwp_flag, kvm_device),
        integration_(QueryIntegration) {}

  grpc::Status CreateVm(grpc::ServerContext* context,
                        const hvstack::v1::CreateVmRequest* request,
                        hvstack::v1::Vm* response) override;
  grpc::Status GetVm(grpc::ServerContext* context,
                     const hvstack::v1::GetVmRequest* request,
                     hvstack::v1::Vm* response) override;
  grpc::Status ListVms(grpc::ServerContext* context,
                       const hvstack::v1::ListVmsRequest* request,
                       hvstack::v1::ListVmsResponse* response) override;
  grpc::Status StartVm(grpc::ServerContext* context,
                       const hvstack::v1::StartVmRequest* request,
                       hvstack::v1::Vm* response) override;
  grpc::Status StopVm(grpc::ServerContext* context,
                      const hvstack::v1::StopVmRequest* request,
                      hvstack::v1::Vm* response) override;
  grpc::Status DeleteVm(grpc::ServerContext* context,
                        const hvstack::v1::DeleteVmRequest* request,
                        google::protobuf::Empty* response) override;
  grpc::Status StreamConsole(
      grpc::ServerContext* context,
      const hvstack::v1::StreamConsoleRequest* request,
      grpc::ServerWriter<hvstack::v1::ConsoleChunk>* writer) override;
  grpc::Status AttachConsole(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<hvstack::v1::ConsoleChunk,
                               hvstack::v1::AttachConsoleRequest>* stream)
      override;
  grpc::Status PauseVm(grpc::ServerContext* context,
                       const hvstack::v1::PauseVmRequest* request,
                       hvstack::v1::Vm* response) override;
  grpc::Status SaveVm(grpc::ServerContext* context,
                      const hvstack::v1::SaveVmRequest* request,
                      hvstack::v1::Vm* response) override;
  grpc::Status DiscardSavedState(
      grpc::ServerContext* context,
      const hvstack::v1::DiscardSavedStateRequest* request,
      hvstack::v1::Vm* response) override;
  // Checkpoints (checkpoint_service.cc).
  grpc::Status CreateCheckpoint(
      grpc::ServerContext* context,
      const hvstack::v1::CreateCheckpointRequest* request,
      hvstack::v1::Checkpoint* response) override;
  grpc::Status ListCheckpoints(
      grpc::ServerContext* context,
      const hvstack::v1::ListCheckpointsRequest* request,
      hvstack::v1::ListCheckpointsResponse* response) override;
  grpc::Status ApplyCheckpoint(
      grpc::ServerContext* context,
      const hvstack::v1::ApplyCheckpointRequest* request,
      hvstack::v1::Vm* response) override;
  grpc::Status DeleteCheckpoint(
      grpc::ServerContext* context,
      const hvstack::v1::DeleteCheckpointRequest* request,
      hvstack::v1::ListCheckpointsResponse* response) override;
  grpc::Status ResumeVm(grpc::ServerContext* context,
                        const hvstack::v1::ResumeVmRequest* request,
                        hvstack::v1::Vm* response) override;
  grpc::Status ResetVm(grpc::ServerContext* context,
                       const hvstack::v1::ResetVmRequest* request,
                       hvstack::v1::Vm* response) override;
  grpc::Status RebootVm(grpc::ServerContext* context,
                        const hvstack::v1::RebootVmRequest* request,
                        hvstack::v1::Vm* response) override;
  grpc::Status ShutdownVm(grpc::ServerContext* context,
                          const hvstack::v1::ShutdownVmRequest* request,
                          hvstack::v1::Vm* response) override;
  grpc::Status UpdateVm(grpc::ServerContext* context,
                        const hvstack::v1::UpdateVmRequest* request,
                        hvstack::v1::Vm* response) override;
  grpc::Status GetVmStats(grpc::ServerContext* context,
                          const hvstack::v1::GetVmStatsRequest* request,
                          hvstack::v1::VmStats* response) override;
  grpc::Status ListVmStats(grpc::ServerContext* context,
                           const hvstack::v1::ListVmStatsRequest* request,
                           hvstack::v1::ListVmStatsResponse* response) override;
  grpc::Status GetHostInfo(grpc::ServerContext* context,
                           const hvstack::v1::GetHostInfoRequest* request,
                           hvstack::v1::HostInfo* response) override;
  grpc::Status WatchEvents(
      grpc::ServerContext* context,
      const hvstack::v1::WatchEventsRequest* request,
      grpc::ServerWriter<hvstack::v1::VmEvent>* writer) override;
  // Key-value exchange with the guest, through its worker
  // (guest_integration.h).
  grpc::Status GetKvp(grpc::ServerContext* context,
                      const hvstack::v1::GetKvpRequest* request,
                      hvstack::v1::KvpItem* response) override;
  grpc::Status SetKvp(grpc::ServerContext* context,
                      const hvstack::v1::SetKvpRequest* request,
                      hvstack::v1::SetKvpResponse* response) override;
  grpc::Status ListKvp(grpc::ServerContext* context,
                       const hvstack::v1::ListKvpRequest* request,
                       hvstack::v1::ListKvpResponse* response) override;
  // Disks, while the VM is Off or Crashed (disk_image.h checks the image).
  grpc::Status AttachDisk(grpc::ServerContext* context,
                          const hvstack::v1::AttachDiskRequest* request,
                          hvstack::v1::Vm* response) override;
  grpc::Status DetachDisk(grpc::ServerContext* context,
                          const hvstack::v1::DetachDiskRequest* request,
                          hvstack::v1::Vm* response) override;

  // Network adapters (nic_service.cc).
  grpc::Status AddNic(grpc::ServerContext* context,
                      const hvstack::v1::AddNicRequest* request,
                      hvstack::v1::Vm* response) override;
  grpc::Status RemoveNic(grpc::ServerContext* context,
                         const hvstack::v1::RemoveNicRequest* request,
                         hvstack::v1::Vm* response) override;
  grpc::Status ListNics(grpc::ServerContext* context,
                        const hvstack::v1::ListNicsRequest* request,
                        hvstack::v1::ListNicsResponse* response) override;

  // Adoption of libvirt domains (libvirt_service.cc).
  grpc::Status ListLibvirtDomains(
      grpc::ServerContext* context,
      const hvstack::v1::ListLibvirtDomainsRequest* request,
      hvstack::v1::ListLibvirtDomainsResponse* response) override;
  grpc::Status AdoptLibvirtDomain(
      grpc::ServerContext* context,
      const hvstack::v1::AdoptLibvirtDomainRequest* request,
      hvstack::v1::Vm* response) override;
  grpc::Status ReleaseLibvirtDomain(
      grpc::ServerContext* context,
      const hvstack::v1::ReleaseLibvirtDomainRequest* request,
      hvstack::v1::ReleaseLibvirtDomainResponse* response) override;

  // How long GetVmStats/ListVmStats wait for each worker's figures (a hung
  // worker costs the caller at most this); --worker-stats-timeout.
  void set_stats_worker_timeout(absl::Duration timeout) {
    stats_worker_timeout_ = timeout;
  }

 private:
  // The socket of the VM's ready worker; FailedPrecondition naming the VM's
  // state when it has none (NotFound for an unknown VM).
  absl::StatusOr<std::string> RunningWorkerSocket(const std::string& name);
  // Finds the VM's next worker for a console that follows it across reboots.
  NextWorker NextWorkerOf(const std::string& name);
  VmStore* const store_;
  VmManager* const vms_;
  AccessControl* const access_;
  LibvirtBackend* const libvirt_;
  HostInfoProvider host_info_;
  // What GetVm shows of running guests' integration components.
  IntegrationCache integration_;
  absl::Duration stats_worker_timeout_ = absl::Seconds(1);
};

}  // namespace vmms

#endif  // HVSTACK_VMMS_VM_SERVICE_H_
