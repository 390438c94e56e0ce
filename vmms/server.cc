#include "vmms/server.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "vmms/log_format.h"

namespace vmms {

absl::StatusOr<std::string> SocketPathFor(const std::string& state_dir) {
  std::string path = state_dir + "/vmms.sock";
  constexpr size_t kMax =
      sizeof(sockaddr_un{}.sun_path) - 1;  // Room for the terminating NUL.
  if (path.size() > kMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path ", path, " is ", path.size(),
                     " bytes; a unix socket path must be at most ", kMax,
                     " bytes: choose a shorter --state-dir"));
  }
  return path;
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(
    const ServerOptions& options) {
  if (options.state_dir.empty())
    return absl::InvalidArgumentError("--state-dir is required");
  // Absolute, because the paths end up in worker configs and in other
  // processes' cwd. The socket path is checked before anything is created.
  std::error_code ec;
  std::string state_dir =
      std::filesystem::absolute(options.state_dir, ec).lexically_normal();
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        "state directory ", options.state_dir, ": ", ec.message()));
  }
  if (state_dir.size() > 1 && state_dir.back() == '/') state_dir.pop_back();
  absl::StatusOr<std::string> socket_path = SocketPathFor(state_dir);
  if (!socket_path.ok()) return socket_path.status();
  std::filesystem::create_directories(state_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create state directory ", state_dir, ": ", ec.message()));
  }

  auto server = std::unique_ptr<Server>(new Server());
  std::string lock_path = state_dir + "/vmms.lock";
  server->lock_.reset(
      ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!server->lock_) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", lock_path, ": ", std::strerror(errno)));
  }
  if (::flock(server->lock_.get(), LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("another vmms is already using state directory ",
                     state_dir, " (", lock_path, " is locked)"));
  }

  absl::StatusOr<std::unique_ptr<VmStore>> store = VmStore::Open(
      state_dir + "/vmms.db", VmStoreOptions{options.event_retention});
  if (!store.ok()) return store.status();
  server->store_ = *std::move(store);

  WorkerManagerOptions worker_options;
  worker_options.state_dir = state_dir;
  worker_options.kvm_device = options.kvm_device;
  worker_options.vmwp_flag = options.vmwp;
  worker_options.start_timeout = options.start_timeout;
  worker_options.stop_grace = options.stop_grace;
  server->workers_ =
      std::make_unique<WorkerManager>(server->store_.get(), worker_options);
  // Before serving: requests see every VM's worker taken over or its end
  // recorded.
  if (absl::Status s = server->workers_->Reattach(); !s.ok()) return s;
  server->service_ = std::make_unique<VmServiceImpl>(server->store_.get(),
                                                     server->workers_.get());

  // We hold the directory's lock, so a socket file here is a stale one from a
  // vmms that died.
  std::filesystem::remove(*socket_path, ec);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + *socket_path,
                           grpc::InsecureServerCredentials());
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on unix:", *socket_path));
  }
  server->socket_path_ = *socket_path;
  spdlog::info("vmms serving on unix:{} (state in {})", *socket_path,
               state_dir);
  return server;
}

Server::~Server() {
  Shutdown();
  Wait();
}

void Server::Shutdown() {
  // Workers first: that ends StartVm calls waiting for them and console streams
  // following them, so the gRPC shutdown below has nothing long-running left to
  // wait for.
  if (workers_ != nullptr) workers_->Shutdown();
  if (store_ != nullptr) store_->CloseEventWatchers();
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(2));
  }
}

void Server::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace vmms
