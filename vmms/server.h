#ifndef HVSTACK_VMMS_SERVER_H_
#define HVSTACK_VMMS_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/scoped_fd.h"
#include "vmms/access_control.h"
#include "vmms/libvirt_backend.h"
#include "vmms/unix_listener.h"
#include "vmms/vm_manager.h"
#include "vmms/vm_service.h"
#include "vmms/vm_store.h"
#include "vmms/worker_manager.h"

namespace vmms {

struct ServerOptions {
  std::string state_dir;
  std::string kvm_device = "/dev/kvm";
  std::string vmwp;  // --vmwp; empty: LocateVmwp's search.
  // --no-sandbox (a developer switch): workers run unconfined, as root.
  bool sandbox = true;
  // --no-zygote: exec every sandboxed worker (see WorkerManagerOptions).
  bool zygote = true;
  // Not flags: tests shorten them.
  absl::Duration start_timeout = absl::Seconds(30);
  // --worker-stats-timeout: how long stats wait for a worker's figures.
  absl::Duration stats_worker_timeout = absl::Seconds(1);
  // Restart policy backoff (see WorkerManagerOptions).
  absl::Duration restart_backoff = absl::Seconds(1);
  // --event-retention: how many events the event log keeps.
  int64_t event_retention = 10000;

  // --libvirt-uri: the libvirt backend's connection; empty: no libvirt
  // backend (libvirt VMs' calls are FAILED_PRECONDITION).
  std::string libvirt_uri;

  // Access (see access_control.h). The main socket (<state dir>/vmms.sock) is
  // mode 0660 with group --socket-group: a name or a number; empty means
  // "hvstack" when that group exists, else the process's own group (root
  // only, in practice).
  std::string socket_group;
  // --readonly-socket: a second unix socket, mode 0666, on which every change
  // is refused (monitoring). Empty: none.
  std::string readonly_socket;
  // --tls-listen host:port with --tls-cert/--tls-key (PEM, this server) and
  // --tls-client-ca (PEM): a TCP listener that requires client certificates
  // signed by that CA. Empty: none.
  std::string tls_listen;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
};

// One vmms instance: the state directory's lock, the store, the worker manager
// and the gRPC server on unix:<state dir>/vmms.sock. main() and the tests both
// run it through this class.
class Server {
 public:
  // Creates the state directory, takes its lock (one vmms per directory), opens
  // and migrates the database, reconciles VMs left active by a previous vmms,
  // starts serving, then starts the autostart VMs (in the background).
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      const ServerOptions& options);
  ~Server();

  // Stops every worker, then the gRPC server. Safe to call from another thread
  // and repeatedly.
  void Shutdown();
  // Blocks until the gRPC server has shut down.
  void Wait();

  const std::string& socket_path() const { return socket_path_; }
  // The TLS listener's port (resolves port 0), or 0 without one.
  int tls_port() const { return tls_port_; }

 private:
  Server() = default;

  base::ScopedFd lock_;
  std::string socket_path_;
  int tls_port_ = 0;
  std::unique_ptr<VmStore> store_;
  std::unique_ptr<WorkerManager> workers_;
  std::unique_ptr<LibvirtBackend> libvirt_;
  // After the backends: destroyed first, its Shutdown shutting them down
  // (after which they report nothing more to it).
  std::unique_ptr<VmManager> vms_;
  UnixPeerTable peers_;
  std::unique_ptr<AccessControl> access_;
  std::unique_ptr<VmServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  // After server_: destroyed (and stopped) before it.
  std::vector<std::unique_ptr<UnixListener>> listeners_;
};

// The socket path for `state_dir`, or INVALID_ARGUMENT when it does not fit in
// sockaddr_un.
absl::StatusOr<std::string> SocketPathFor(const std::string& state_dir);

}  // namespace vmms

#endif  // HVSTACK_VMMS_SERVER_H_
