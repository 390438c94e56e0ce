// vmms: the hvstack management service. Runs in the foreground and logs to
// stderr.
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <thread>

#include "vmms/log_format.h"
#include "vmms/server.h"

int main(int argc, char** argv) {
  vmms::ServerOptions options;
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
  CLI11_PARSE(app, argc, argv);

  spdlog::set_default_logger(spdlog::stderr_logger_mt("vmms"));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e vmms[%P] %l: %v");

  // Block the shutdown signals in every thread (gRPC's included, which inherit
  // this mask) and take them synchronously in one thread of our own.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<std::unique_ptr<vmms::Server>> server =
      vmms::Server::Start(options);
  if (!server.ok()) {
    spdlog::critical("{}", server.status().message());
    return 1;
  }
  std::thread signal_thread([&signals, &server] {
    int sig = 0;
    sigwait(&signals, &sig);
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
