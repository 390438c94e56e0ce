// vmms: the hvstack management service. Runs in the foreground and logs to
// stderr. Under systemd (Type=notify) it reports READY=1, STATUS= and
// STOPPING=1 through sd_notify; without NOTIFY_SOCKET those calls do nothing.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "absl/time/time.h"
#include "base/log_pattern.h"
#include "vmms/log_format.h"
#include "vmms/server.h"

namespace {

// sd_notify, logging (not failing) when the service manager cannot be told.
void Notify(const std::string& state) {
  if (int r = sd_notify(0, state.c_str()); r < 0) {
    spdlog::warn("sd_notify({}) failed: {}", state, std::strerror(-r));
  }
}

}  // namespace

int main(int argc, char** argv) {
  vmms::ServerOptions options;
  bool keep_workers_on_exit = false;
  CLI::App app{
      "vmms: the hvstack management service (foreground, logs to stderr)",
      "vmms"};
  app.add_option(
         "--state-dir", options.state_dir,
         "Directory for vmms.db, vmms.sock and the VMs' runtime directories")
      ->required();
  app.add_option("--kvm-device", options.kvm_device,
                 "KVM device handed to workers")
      ->capture_default_str();
  app.add_option(
      "--vmwp", options.vmwp,
      "Worker executable (default: $HVSTACK_VMWP, else vmwp next to vmms, else "
      "../vmwp/vmwp relative to vmms)");
  app.add_option("--event-retention", options.event_retention,
                 "How many events the event log keeps (the newest; older ones "
                 "are trimmed and WatchEvents after them is OUT_OF_RANGE)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  bool no_sandbox = false;
  app.add_flag("--no-sandbox", no_sandbox,
               "DEVELOPER SWITCH: run workers unconfined, as root (no own "
               "uid, namespaces, seccomp or cgroup). Logged loudly on every "
               "start and shown by `vmctl show`");
  bool no_zygote = false;
  app.add_flag("--no-zygote", no_zygote,
               "Exec every sandboxed worker instead of forking it from the "
               "warm fork server (`vmwp --zygote-fd`); for comparisons");
  app.add_flag("--keep-workers-on-exit", keep_workers_on_exit,
               "On SIGINT/SIGTERM leave running VMs' workers running for the "
               "next vmms to take over (what vmms.service uses); by default "
               "every worker is stopped first (hard power-off)");
  app.add_option("--libvirt-uri", options.libvirt_uri,
                 "Also manage libvirt VMs (backend libvirt) through libvirt "
                 "at this URI, e.g. qemu:///system, or qemu:///embed?root=DIR "
                 "for libvirt's embedded QEMU driver (no daemon). Without it "
                 "only hvstack's own workers run VMs");
  app.add_option("--socket-group", options.socket_group,
                 "Group of the main socket (mode 0660); root and its members "
                 "may change VMs, others only read (default: hvstack if that "
                 "group exists, else vmms's own group)");
  app.add_option("--readonly-socket", options.readonly_socket,
                 "Also listen on this unix socket (mode 0666) where every "
                 "change is refused (PERMISSION_DENIED): for monitoring");
  auto* tls = app.add_option(
      "--tls-listen", options.tls_listen,
      "Also listen on host:port with TLS, requiring client certificates "
      "signed by --tls-client-ca");
  app.add_option("--tls-cert", options.tls_cert,
                 "PEM certificate (chain) of this server")
      ->needs(tls)
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key", options.tls_key, "PEM private key of --tls-cert")
      ->needs(tls)
      ->check(CLI::ExistingFile);
  app.add_option("--tls-client-ca", options.tls_client_ca,
                 "PEM CA certificate(s) that client certificates must chain to")
      ->needs(tls)
      ->check(CLI::ExistingFile);
  double worker_start_timeout_s = absl::ToDoubleSeconds(options.start_timeout);
  app.add_option("--worker-start-timeout", worker_start_timeout_s,
                 "Seconds a new worker gets to become ready before its start "
                 "fails (slow or emulated hosts need more)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  double worker_stats_timeout_s =
      absl::ToDoubleSeconds(options.stats_worker_timeout);
  app.add_option("--worker-stats-timeout", worker_stats_timeout_s,
                 "Seconds `vmctl stats` waits for a running worker's figures "
                 "(VPs, adapters) before it shows the VM without them")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  CLI11_PARSE(app, argc, argv);
  options.sandbox = !no_sandbox;
  options.start_timeout = absl::Seconds(worker_start_timeout_s);
  options.stats_worker_timeout = absl::Seconds(worker_stats_timeout_s);
  options.zygote = !no_zygote;

  spdlog::set_default_logger(spdlog::stderr_logger_mt("vmms"));
  spdlog::set_pattern(base::LogLinePattern("vmms"));

  // Block the shutdown signals in every thread (gRPC's included, which inherit
  // this mask) and take them synchronously in one thread of our own.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Process-wide gRPC settings, read by every ServerBuilder made afterwards:
  // grpc.health.v1.Health and server reflection on the public socket.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  Notify("STATUS=opening the database and taking over running workers");
  absl::StatusOr<std::unique_ptr<vmms::Server>> server =
      vmms::Server::Start(options);
  if (!server.ok()) {
    spdlog::critical("{}", server.status().message());
    Notify("STATUS=start-up failed: " + std::string(server.status().message()));
    return 1;
  }
  // Server::Start returns once the database is open and migrated, the previous
  // vmms's workers are taken over and the socket listens.
  Notify("READY=1\nSTATUS=serving on unix:" + (*server)->socket_path());

  std::thread signal_thread([&signals, &server, keep_workers_on_exit] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (keep_workers_on_exit) {
      // Leave every worker running: they are in their own sessions, and the
      // next vmms on this state directory takes them over (Reattach). Not
      // going through Server::Shutdown (which stops workers) means exiting
      // without closing the database or the gRPC server, exactly what a crash
      // of vmms does and what the store and Reattach are built to survive:
      // every mutation is one SQLite transaction (WAL), the directory lock and
      // descriptors go with the process, the stale socket file is replaced by
      // the next vmms.
      Notify("STOPPING=1\nSTATUS=exiting; workers left running");
      spdlog::info(
          "received {}; exiting and leaving workers running for the "
          "next vmms (--keep-workers-on-exit)",
          sigabbrev_np(sig));
      spdlog::shutdown();
      std::fflush(nullptr);
      _exit(0);
    }
    Notify("STOPPING=1\nSTATUS=stopping workers and shutting down");
    spdlog::info("received {}; stopping workers and shutting down",
                 sigabbrev_np(sig));
    (*server)->Shutdown();
  });
  (*server)->Wait();
  signal_thread.join();
  server->reset();
  spdlog::info("vmms stopped");
  return 0;
}
