// vmctl: the command-line client of hvstack's public API (proto/hvstack/v1).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <string>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/socket_path.h"

int main(int argc, char** argv) {
  CLI::App app{"vmctl: manage hvstack virtual machines through vmms", "vmctl"};
  app.require_subcommand(1);
  app.fallthrough();  // Global options may also follow the subcommand.
  std::string socket;
  bool json = false;
  app.add_option(
      "--socket", socket,
      "vmms socket (default: $HVSTACK_SOCKET, $HVSTACK_STATE_DIR/vmms.sock, "
      "/var/lib/hvstack/vmms.sock if present, else ./state/vmms.sock)");
  app.add_flag("--json", json, "Print results as the API's canonical JSON");

  vmctl::CreateArgs create;
  auto* create_cmd =
      app.add_subcommand("create", "Define a VM (it starts Off)");
  create_cmd->add_option("NAME", create.name, "VM name")->required();
  create_cmd
      ->add_option("--kernel", create.kernel,
                   "Kernel image: bzImage, vmlinux or a guest/ ELF64")
      ->required();
  create_cmd->add_option("--memory", create.memory_mib, "Guest RAM in MiB")
      ->capture_default_str();
  create_cmd->add_option("--cpus", create.cpus, "Virtual processors")
      ->capture_default_str();
  create_cmd->add_option("--cmdline", create.cmdline, "Kernel command line");
  create_cmd->add_option("--initrd", create.initrd,
                         "Initial ramdisk (cpio archive) for a Linux kernel");

  std::string name;
  auto* list_cmd = app.add_subcommand("list", "List VMs");
  auto* show_cmd = app.add_subcommand("show", "Show one VM");
  auto* start_cmd =
      app.add_subcommand("start", "Start a VM; returns once it runs");
  auto* stop_cmd = app.add_subcommand("stop", "Hard power-off a VM");
  auto* delete_cmd =
      app.add_subcommand("delete", "Delete an Off or Crashed VM");
  auto* console_cmd = app.add_subcommand(
      "console",
      "Attach to a VM's serial console: output follows, input goes to the "
      "guest; on a terminal, Ctrl-] detaches");
  for (CLI::App* cmd :
       {show_cmd, start_cmd, stop_cmd, delete_cmd, console_cmd}) {
    cmd->add_option("NAME", name, "VM name")->required();
  }
  bool no_follow = false;
  console_cmd->add_flag(
      "--no-follow", no_follow,
      "Print the retained output and exit instead of following");

  uint64_t since = 0;
  bool follow = false;
  auto* events_cmd = app.add_subcommand(
      "events",
      "Print the event log (creations, state changes, reboots, deletions)");
  events_cmd->add_option("--since", since,
                         "Only events with a larger sequence number (resume "
                         "from the last one seen)");
  events_cmd->add_flag("--follow,-f", follow,
                       "Keep printing new events as they happen");

  auto* kvp_cmd = app.add_subcommand(
      "kvp",
      "Key-value exchange with a running guest's KVP integration service");
  kvp_cmd->require_subcommand(1);
  std::string kvp_pool = "external";
  std::string kvp_key, kvp_value;
  auto* kvp_get = kvp_cmd->add_subcommand("get", "Print one key's value");
  auto* kvp_set = kvp_cmd->add_subcommand(
      "set", "Set a key for the guest (external or guest pool)");
  auto* kvp_list = kvp_cmd->add_subcommand("list", "List a pool");
  for (CLI::App* cmd : {kvp_get, kvp_set, kvp_list}) {
    cmd->add_option("NAME", name, "VM name")->required();
    cmd->add_option("--pool", kvp_pool,
                    "external, guest, auto (the guest's intrinsic items: OS, "
                    "host name ...), auto_external, auto_internal")
        ->capture_default_str();
  }
  kvp_get->add_option("KEY", kvp_key, "Key")->required();
  kvp_set->add_option("KEY", kvp_key, "Key")->required();
  kvp_set->add_option("VALUE", kvp_value, "Value")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return vmctl::kExitUsage;
  }

  if (socket.empty()) socket = vmctl::DefaultSocketPath();
  vmctl::Session session = vmctl::Connect(socket, json, std::cout, std::cerr);
  session.in_fd = STDIN_FILENO;
  if (*create_cmd) return vmctl::CreateCommand(session, create);
  if (*list_cmd) return vmctl::ListCommand(session);
  if (*show_cmd) return vmctl::ShowCommand(session, name);
  if (*start_cmd) return vmctl::StartCommand(session, name);
  if (*stop_cmd) return vmctl::StopCommand(session, name);
  if (*delete_cmd) return vmctl::DeleteCommand(session, name);
  if (*events_cmd) return vmctl::EventsCommand(session, since, follow);
  if (*console_cmd) return vmctl::ConsoleCommand(session, name, !no_follow);
  if (*kvp_get) return vmctl::KvpGetCommand(session, name, kvp_pool, kvp_key);
  if (*kvp_set)
    return vmctl::KvpSetCommand(session, name, kvp_pool, kvp_key, kvp_value);
  if (*kvp_list) return vmctl::KvpListCommand(session, name, kvp_pool);
  return vmctl::kExitUsage;
}
