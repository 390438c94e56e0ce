#include "vmms/server.h"

#include <fcntl.h>
#include <grp.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
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

namespace {

struct SocketGroup {
  std::optional<gid_t> gid;  // nullopt: leave the process's group.
  std::string name;
};

// --socket-group: a group name or number; empty: "hvstack" if it exists.
absl::StatusOr<SocketGroup> ResolveSocketGroup(const std::string& flag) {
  const std::string name = flag.empty() ? "hvstack" : flag;
  std::vector<char> buffer(16384);
  group entry{};
  group* found = nullptr;
  int err =
      ::getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (err == 0 && found != nullptr) return SocketGroup{found->gr_gid, name};
  gid_t gid = 0;
  if (!flag.empty() && absl::SimpleAtoi(flag, &gid)) {
    err = ::getgrgid_r(gid, &entry, buffer.data(), buffer.size(), &found);
    return SocketGroup{gid, err == 0 && found != nullptr
                                ? std::string(found->gr_name)
                                : absl::StrCat(gid)};
  }
  if (flag.empty()) {
    return SocketGroup{std::nullopt,
                       absl::StrCat(::getgid(), " (no group hvstack)")};
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--socket-group ", flag,
                   ": no such group; create it (systemd-sysusers does, from "
                   "sysusers.d/hvstack.conf; or groupadd) or name another"));
}

absl::StatusOr<std::string> ReadPem(const std::string& flag,
                                    const std::string& path) {
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  if (!in || content.str().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " ", path,
        ": cannot read it (or it is empty): ", std::strerror(errno)));
  }
  return content.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsCredentials(
    const ServerOptions& options) {
  if (options.tls_cert.empty() || options.tls_key.empty() ||
      options.tls_client_ca.empty()) {
    return absl::InvalidArgumentError(
        "--tls-listen needs --tls-cert, --tls-key and --tls-client-ca (client "
        "certificates are required)");
  }
  absl::StatusOr<std::string> cert = ReadPem("--tls-cert", options.tls_cert);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem("--tls-key", options.tls_key);
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> ca =
      ReadPem("--tls-client-ca", options.tls_client_ca);
  if (!ca.ok()) return ca.status();
  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = *ca;
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

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

  VmManagerOptions manager_options;
  manager_options.state_dir = state_dir;
  manager_options.restart_backoff = options.restart_backoff;
  server->vms_ =
      std::make_unique<VmManager>(server->store_.get(), manager_options);
  WorkerManagerOptions worker_options;
  worker_options.state_dir = state_dir;
  worker_options.kvm_device = options.kvm_device;
  worker_options.vmwp_flag = options.vmwp;
  worker_options.start_timeout = options.start_timeout;
  worker_options.sandbox = options.sandbox;
  worker_options.zygote = options.zygote;
  server->workers_ = std::make_unique<WorkerManager>(
      server->store_.get(), worker_options, server->vms_.get());
  if (!options.libvirt_uri.empty()) {
    server->libvirt_ = std::make_unique<LibvirtBackend>(
        server->store_.get(),
        LibvirtBackendOptions{.uri = options.libvirt_uri,
                              .state_dir = state_dir},
        server->vms_.get());
    // Not reaching libvirt is no reason to stop: only libvirt VMs wait for
    // it (UNAVAILABLE), and vmms reconnects in the background.
    server->libvirt_->Open();
  }
  server->vms_->SetBackends(server->workers_.get(), server->libvirt_.get());
  // Before serving: requests see every VM's worker taken over or its end
  // recorded.
  if (absl::Status s = server->vms_->Reattach(); !s.ok()) return s;

  absl::StatusOr<SocketGroup> group = ResolveSocketGroup(options.socket_group);
  if (!group.ok()) return group.status();
  server->access_ =
      std::make_unique<AccessControl>(&server->peers_, group->gid, group->name);
  server->service_ = std::make_unique<VmServiceImpl>(
      server->store_.get(), server->vms_.get(), server->access_.get(),
      options.vmwp, options.kvm_device, server->libvirt_.get());
  server->service_->set_stats_worker_timeout(options.stats_worker_timeout);

  // We hold the directory's lock, so a socket file there is a stale one from a
  // vmms that died; Listen replaces it.
  UnixSocketOptions main_socket{*socket_path, 0660, group->gid, false};
  absl::StatusOr<std::unique_ptr<UnixListener>> main_listener =
      UnixListener::Listen(main_socket, &server->peers_);
  if (!main_listener.ok()) return main_listener.status();
  server->listeners_.push_back(*std::move(main_listener));
  if (!options.readonly_socket.empty()) {
    absl::StatusOr<std::unique_ptr<UnixListener>> ro = UnixListener::Listen(
        {options.readonly_socket, 0666, std::nullopt, true}, &server->peers_);
    if (!ro.ok()) return ro.status();
    server->listeners_.push_back(*std::move(ro));
  }

  grpc::ServerBuilder builder;
  if (!options.tls_listen.empty()) {
    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> tls =
        TlsCredentials(options);
    if (!tls.ok()) return tls.status();
    builder.AddListeningPort(options.tls_listen, *tls, &server->tls_port_);
  }
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr ||
      (!options.tls_listen.empty() && server->tls_port_ == 0)) {
    return absl::UnavailableError(absl::StrCat(
        "cannot start the gRPC server",
        options.tls_listen.empty()
            ? std::string()
            : absl::StrCat(" (TLS listener on ", options.tls_listen,
                           ": is the address valid and the port free?)")));
  }
  for (auto& listener : server->listeners_) {
    listener->Serve(server->server_.get());
  }
  server->socket_path_ = *socket_path;
  spdlog::info(
      "vmms serving on unix:{} (mode 0660, group {}){}{} (state in {})",
      *socket_path, group->name,
      options.readonly_socket.empty()
          ? std::string()
          : ", read-only on unix:" + options.readonly_socket,
      options.tls_listen.empty()
          ? std::string()
          : absl::StrCat(", TLS with client certificates on port ",
                         server->tls_port_),
      state_dir);
  // After the reconcile: a VM still running under its old worker is not
  // started twice.
  server->vms_->StartAutostartVms();
  return server;
}

Server::~Server() {
  Shutdown();
  Wait();
}

void Server::Shutdown() {
  // No new connections.
  for (auto& listener : listeners_) listener->Stop();
  // Workers first: that ends StartVm calls waiting for them and console streams
  // following them, so the gRPC shutdown below has nothing long-running left to
  // wait for.
  if (vms_ != nullptr) vms_->Shutdown();
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
