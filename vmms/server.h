#ifndef HVSTACK_VMMS_SERVER_H_
#define HVSTACK_VMMS_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/scoped_fd.h"
#include "vmms/vm_service.h"
#include "vmms/vm_store.h"
#include "vmms/worker_manager.h"

namespace vmms {

struct ServerOptions {
  std::string state_dir;
  std::string kvm_device = "/dev/kvm";
  std::string vmwp;  // --vmwp; empty: LocateVmwp's search.
  // Not flags: tests shorten them.
  absl::Duration start_timeout = absl::Seconds(30);
  absl::Duration stop_grace = absl::Seconds(3);
  // --event-retention: how many events the event log keeps.
  int64_t event_retention = 10000;
};

// One vmms instance: the state directory's lock, the store, the worker manager
// and the gRPC server on unix:<state dir>/vmms.sock. main() and the tests both
// run it through this class.
class Server {
 public:
  // Creates the state directory, takes its lock (one vmms per directory), opens
  // and migrates the database, reconciles VMs left active by a previous vmms,
  // and starts serving.
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      const ServerOptions& options);
  ~Server();

  // Stops every worker, then the gRPC server. Safe to call from another thread
  // and repeatedly.
  void Shutdown();
  // Blocks until the gRPC server has shut down.
  void Wait();

  const std::string& socket_path() const { return socket_path_; }

 private:
  Server() = default;

  base::ScopedFd lock_;
  std::string socket_path_;
  std::unique_ptr<VmStore> store_;
  std::unique_ptr<WorkerManager> workers_;
  std::unique_ptr<VmServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
};

// The socket path for `state_dir`, or INVALID_ARGUMENT when it does not fit in
// sockaddr_un.
absl::StatusOr<std::string> SocketPathFor(const std::string& state_dir);

}  // namespace vmms

#endif  // HVSTACK_VMMS_SERVER_H_
