#ifndef HVSTACK_VMMS_LIBVIRT_BACKEND_H_
#define HVSTACK_VMMS_LIBVIRT_BACKEND_H_

#include <libvirt/libvirt.h>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/hvstack/v1/vm.pb.h"
#include "vmms/console_feed.h"
#include "vmms/reboot_guard.h"
#include "vmms/vm_backend.h"
#include "vmms/vm_store.h"

namespace vmms {

struct LibvirtBackendOptions {
  // vmms --libvirt-uri, e.g. qemu:///system or qemu:///embed?root=DIR.
  std::string uri;
  std::string state_dir;
  // Reconnect backoff after a lost (or never made) connection: 0.5 s,
  // doubling up to this.
  absl::Duration reconnect_max = absl::Seconds(10);
};

// The libvirt backend: each VM with config.backend = BACKEND_LIBVIRT is a
// persistent libvirt domain (libvirt_xml.h), driven through libvirt's C API.
//
// Events: libvirt's default event loop runs on a thread of its own; domain
// lifecycle and reboot events are queued and handled in order on another
// thread, which reconciles the VM's recorded state with the domain's real one
// (virDomainGetState with its reason) and records the difference with
// libvirt's reason. The same reconcile runs for every libvirt VM after vmms
// starts and after a lost connection comes back (reconnect with backoff),
// so whatever happened meanwhile is recorded ("... while vmms was down").
// vmms's own operations hold the VM's record lock while they call libvirt and
// record, so the events they cause find nothing left to record.
//
// Without a connection, every call about a libvirt VM is UNAVAILABLE naming
// the URI; hvstack VMs are never affected. Thread-safe.
class LibvirtBackend final : public VmBackend {
 public:
  LibvirtBackend(VmStore* store, LibvirtBackendOptions options,
                 VmBackendHost* host);
  ~LibvirtBackend() override;

  // Starts the event loop and connects (a failure is retried in the
  // background; Connected() tells).
  void Open();

  const char* name() const override { return "libvirt"; }
  absl::Status Create(const Vm& vm) override;
  absl::StatusOr<Vm> Start(const Vm& vm, const std::string& reason) override;
  absl::StatusOr<Vm> Stop(const Vm& vm, const std::string& reason) override;
  absl::StatusOr<Vm> Pause(const Vm& vm) override;
  absl::StatusOr<Vm> Resume(const Vm& vm) override;
  absl::StatusOr<Vm> Reset(const Vm& vm) override;
  absl::StatusOr<Vm> Reboot(const Vm& vm) override;
  absl::StatusOr<Vm> GracefulShutdown(const Vm& vm,
                                      const ShutdownOptions& options) override;
  absl::Status Forget(const Vm& vm) override;
  absl::Status PrepareUpdate(const Vm& vm, const hvstack::v1::VmConfig& merged,
                             const std::vector<std::string>& paths) override;
  Vm Describe(Vm vm) override;
  absl::StatusOr<ConsoleSource> Console(const Vm& vm) override;
  std::optional<ConsoleSource> NextConsole(const Vm& vm, uint64_t generation,
                                           absl::Duration timeout) override;
  hvstack::v1::VmStats Stats(const Vm& vm, absl::Duration timeout) override;
  absl::Status Reattach(const std::vector<Vm>& vms) override;
  void Shutdown(const std::string& reason) override;

  // Before a disk or adapter is added to libvirt VM `vm` (its config then
  // `merged`): FAILED_PRECONDITION for an adopted domain (its hardware is
  // libvirt's) or what LibvirtSupports refuses. `what` names the change.
  absl::Status CheckHardware(const Vm& vm, const hvstack::v1::VmConfig& merged,
                             absl::string_view what);

  // Adoption. The domains libvirt has that are no VM of vmms (sorted by name);
  // UNAVAILABLE naming the URI without a connection.
  absl::StatusOr<hvstack::v1::ListLibvirtDomainsResponse> ListUnmanaged();
  // The VM to record for adopting `domain` (its name or UUID) as `name`
  // (empty: the domain's name): the domain's UUID, vCPUs and memory,
  // Vm.libvirt.adopted. NOT_FOUND, ALREADY_EXISTS (already a VM of vmms),
  // FAILED_PRECONDITION (transient), UNAVAILABLE as for every call.
  absl::StatusOr<Vm> AdoptionRecord(const std::string& domain,
                                    const std::string& name);
  // After the adopted VM's row exists: records the domain's real state.
  void Adopted(const Vm& vm);
  // Before a released VM's row goes: vmms lets go of the domain (its console
  // stream), changing nothing in libvirt.
  void Release(const Vm& vm);

  // GetHostInfo: URI, connected, libvirt's version, the last error.
  void FillHostInfo(hvstack::v1::HostInfo* info);

 private:
  struct Connection;
  using ConnPtr = std::shared_ptr<Connection>;
  struct DomainPtrDeleter {
    void operator()(virDomainPtr d) const {
      if (d != nullptr) virDomainFree(d);
    }
  };
  using DomainPtr = std::unique_ptr<virDomain, DomainPtrDeleter>;

  // What vmms keeps per libvirt VM while it runs.
  struct VmRuntime {
    // Held by operations and by reconcile while they call libvirt and
    // record: one writer of the VM's state at a time.
    absl::Mutex record_mu;
    absl::Mutex mu ABSL_ACQUIRED_AFTER(record_mu);
    // Set by Stop (before it destroys the domain): the reason recorded.
    std::optional<std::string> stop_reason ABSL_GUARDED_BY(mu);
    bool shutdown_requested ABSL_GUARDED_BY(mu) = false;
    // When the last reboot was recorded (by a reset, or from a REBOOT
    // event): one reboot makes QEMU report several resets (the firmware
    // resets again), so REBOOT events within kRebootBurst of it are the same
    // reboot.
    absl::Time last_reboot ABSL_GUARDED_BY(mu);
    absl::Time up_since ABSL_GUARDED_BY(mu);
    int run_id ABSL_GUARDED_BY(mu) = -1;
    std::shared_ptr<ConsoleFeed> console ABSL_GUARDED_BY(mu);
    uint64_t console_generation ABSL_GUARDED_BY(mu) = 0;
    // Where in `console` the last recorded guest crash was read up to: the
    // next crash's panic line comes after it.
    uint64_t crash_console_mark ABSL_GUARDED_BY(mu) = 0;
    // on_guest_crash stop: "guest crashed: <summary>" of the panic that
    // libvirt is ending the domain for (the reason recorded with Crashed).
    std::optional<std::string> crash_reason ABSL_GUARDED_BY(mu);
    // Guest reboots and crash restarts since the start, against the
    // reboot-loop limit (as for own workers).
    std::optional<RebootGuard> reboot_guard ABSL_GUARDED_BY(mu);
  };

  struct Event {
    std::string domain_uuid;
    bool reboot = false;
    int event = 0;
    int detail = 0;
    absl::Time time;
  };

  absl::StatusOr<ConnPtr> Conn();
  // UNAVAILABLE: `what` (e.g. "VM 'x' cannot start"), the URI, the last
  // connection error, what to do.
  absl::Status Unavailable(const std::string& what);
  // The VM's domain; NOT_FOUND naming it when libvirt has none.
  absl::StatusOr<DomainPtr> DomainOf(Connection& conn, const Vm& vm);
  std::shared_ptr<VmRuntime> RuntimeOf(const std::string& uuid);
  // Records the difference between `vm`'s recorded state and its domain's
  // real one; `context` ends the reasons (" (while vmms was down)").
  // Needs runtime.record_mu.
  void ReconcileLocked(const Vm& vm, VmRuntime& runtime,
                       const std::string& context);
  void Reconcile(const std::string& vm_uuid, const std::string& context);
  // The guest reported a panic (libvirt's CRASHED event, pvpanic; or a
  // domain found crashed (panicked) by a reconcile): recorded as the VM's
  // guest crash (a guest_crashed event, Vm.last_guest_crash: the panic line
  // of its serial console as the summary, the console's tail as the message)
  // and its on_guest_crash policy applied as for own workers (libvirt's
  // <on_crash> acts on the domain): preserve -> Paused "guest crashed: ...";
  // restart -> a reboot "guest rebooted: guest crashed: ..." (reboot-loop
  // limit); stop -> the reason of the Crashed that the domain's end records.
  // Needs runtime.record_mu.
  void RecordPanicLocked(const Vm& vm, VmRuntime& runtime, absl::Time when,
                         const std::string& context);
  // Counts a guest reboot (or crash restart) against the reboot-loop limit.
  // One too many: destroys the domain, records Crashed "guest crashed: reboot
  // loop: ...; last: <last>" and returns false. Needs runtime.record_mu.
  bool GuardRebootLocked(const Vm& vm, VmRuntime& runtime,
                         const std::string& last);
  void ReconcileAll(const std::string& context);
  // Opens the domain's serial console into a fresh ConsoleFeed.
  void OpenConsole(Connection& conn, virDomainPtr domain, const Vm& vm,
                   VmRuntime& runtime);
  void EndConsole(VmRuntime& runtime);
  absl::StatusOr<Vm> DoStop(const Vm& vm, const std::string& reason);

  void EventLoop();
  void Reaper();
  void Keeper();
  void Processor();
  absl::Status ConnectOnce();
  void Enqueue(Event event);
  void OnConnectionClosed(int reason);
  static int OnLifecycle(virConnectPtr, virDomainPtr domain, int event,
                         int detail, void* opaque);
  static int OnReboot(virConnectPtr, virDomainPtr domain, void* opaque);
  static void OnClose(virConnectPtr, int reason, void* opaque);

  VmStore* const store_;
  const LibvirtBackendOptions options_;
  VmBackendHost* const host_;

  absl::Mutex mu_;
  ConnPtr conn_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool processor_stop_ ABSL_GUARDED_BY(mu_) = false;
  bool loop_stop_ ABSL_GUARDED_BY(mu_) = false;
  // The reaper runs until the domains are stopped: libvirt's destroy waits
  // for its QEMU to be reaped.
  bool reaper_stop_ ABSL_GUARDED_BY(mu_) = false;
  std::string version_ ABSL_GUARDED_BY(mu_);
  bool reconnect_needed_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Event> events_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<VmRuntime>> runtimes_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_console_generation_ ABSL_GUARDED_BY(mu_) = 1;

  std::thread event_loop_;
  std::thread reaper_;
  std::thread keeper_;
  std::thread processor_;
  bool opened_ = false;
};

}  // namespace vmms

#endif  // HVSTACK_VMMS_LIBVIRT_BACKEND_H_
