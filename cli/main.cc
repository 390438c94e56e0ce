// vmctl: the command-line client of hvstack's public API (proto/hvstack/v1).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <string>

#include "cli/call_support.h"
#include "cli/checkpoint_commands.h"
#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/libvirt_commands.h"
#include "cli/nic_commands.h"
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
  int request_timeout_s = 0;
  app.add_option("--request-timeout", request_timeout_s,
                 "Deadline in seconds for every call (default: 15 s for "
                 "reads, 90 s for calls that wait on a worker, more for "
                 "calls that wait on the guest)")
      ->check(CLI::Range(1, 24 * 3600));

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
  create_cmd->add_option(
      "--disk", create.disks,
      "A SCSI disk: PATH[,format=raw|qcow2|vhdx][,readonly][,lun=N] "
      "(repeatable, in order; format detected when left out)");
  create_cmd->add_option(
      "--nic", create.nics,
      "A network adapter (repeatable): bridge=BRIDGE[,mac=MAC][,mtu=N] puts "
      "its TAP device on that host bridge; tap[,mac=MAC][,mtu=N] leaves it "
      "unattached. Without mac= vmms generates one (02:68:76:..)");
  create_cmd->add_flag(
      "--no-enlightenments", create.no_enlightenments,
      "Hide the Hyper-V interface and VMBus (no heartbeat, graceful shutdown "
      "or KVP); the guest sees KVM's paravirtual CPUID leaves instead");
  std::string create_crash_policy;
  auto* c_crash_policy =
      create_cmd
          ->add_option("--on-guest-crash", create_crash_policy,
                       "When the guest reports its own crash (a kernel panic): "
                       "stop (Crashed, the default), restart (a fresh boot, "
                       "counted like a reboot) or preserve (Paused, memory "
                       "kept for inspection)")
          ->check(CLI::IsMember({"stop", "restart", "preserve"}));
  create_cmd
      ->add_option("--backend", create.backend,
                   "What runs the VM: hvstack (its own worker) or libvirt "
                   "(a libvirt domain; vmms needs --libvirt-uri)")
      ->check(CLI::IsMember({"hvstack", "libvirt"}))
      ->capture_default_str();
  create_cmd
      ->add_option("--accelerator", create.accelerator,
                   "libvirt backend: kvm, or tcg (QEMU's emulator, no KVM)")
      ->check(CLI::IsMember({"kvm", "tcg"}))
      ->capture_default_str();

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

  auto* disk_cmd = app.add_subcommand(
      "disk", "A VM's SCSI disks (add/remove while the VM is off)");
  disk_cmd->require_subcommand(1);
  std::string disk_spec, disk_target, disk_path, disk_size, disk_format = "raw";
  auto* disk_add =
      disk_cmd->add_subcommand("add", "Attach a disk image to an off VM");
  disk_add->add_option("NAME", name, "VM name")->required();
  disk_add
      ->add_option("DISK", disk_spec,
                   "PATH[,format=raw|qcow2|vhdx][,readonly][,lun=N]")
      ->required();
  auto* disk_remove = disk_cmd->add_subcommand(
      "remove", "Detach a disk from an off VM (the image file stays)");
  disk_remove->add_option("NAME", name, "VM name")->required();
  disk_remove
      ->add_option("DISK", disk_target, "The disk's path or address (0:0:N)")
      ->required();
  auto* disk_list = disk_cmd->add_subcommand("list", "List a VM's disks");
  disk_list->add_option("NAME", name, "VM name")->required();
  auto* disk_create = disk_cmd->add_subcommand(
      "create",
      "Create an empty image here, as you (raw: a sparse file; qcow2/vhdx: "
      "qemu-img); never overwrites");
  disk_create->add_option("PATH", disk_path, "The new image")->required();
  disk_create->add_option("--size", disk_size, "e.g. 10G, 512M")->required();
  disk_create->add_option("--format", disk_format, "raw, qcow2 or vhdx")
      ->capture_default_str();

  auto* pause_cmd = app.add_subcommand(
      "pause", "Pause a running VM (its VPs are held; memory stays)");
  auto* resume_cmd = app.add_subcommand("resume", "Resume a paused VM");
  auto* save_cmd = app.add_subcommand(
      "save",
      "Save a running or paused VM to disk (state Saved; start restores it)");
  auto* discard_saved_cmd = app.add_subcommand(
      "discard-saved", "Drop a Saved VM's saved state (it becomes Off)");
  auto* reset_cmd = app.add_subcommand(
      "reset", "Hard reset: a fresh worker, as a power cycle would");
  auto* reboot_cmd = app.add_subcommand(
      "reboot", "Ask the guest to reboot (shutdown IC), else a hard reset");
  auto* shutdown_cmd = app.add_subcommand(
      "shutdown", "Ask the guest to power off and wait for it");
  double shutdown_timeout = 60;
  bool force_after = false;
  shutdown_cmd
      ->add_option("--timeout", shutdown_timeout,
                   "Seconds the guest gets to power off (0.001 to 3600)")
      ->capture_default_str();
  shutdown_cmd->add_flag(
      "--force-after", force_after,
      "Power the VM off hard if the guest has not by then (or cannot be "
      "asked); without it vmctl fails (exit 3 or 6) and the VM keeps running");
  auto* update_cmd = app.add_subcommand(
      "update",
      "Change a VM's configuration (hardware fields while Off or Crashed)");
  vmctl::UpdateArgs update;
  uint32_t update_cpus = 0;
  uint64_t update_memory = 0;
  std::string update_kernel, update_cmdline, update_initrd, update_autostart,
      update_policy;
  auto* u_cpus =
      update_cmd->add_option("--cpus", update_cpus, "Virtual processors");
  auto* u_memory =
      update_cmd->add_option("--memory", update_memory, "Guest RAM in MiB");
  auto* u_kernel =
      update_cmd->add_option("--kernel", update_kernel, "Kernel image");
  auto* u_cmdline = update_cmd->add_option("--cmdline", update_cmdline,
                                           "Kernel command line");
  auto* u_initrd = update_cmd->add_option("--initrd", update_initrd,
                                          "Initial ramdisk (\"\" removes it)");
  auto* u_autostart = update_cmd
                          ->add_option("--autostart", update_autostart,
                                       "Start with vmms: on or off")
                          ->check(CLI::IsMember({"on", "off"}));
  auto* u_policy =
      update_cmd
          ->add_option("--restart-policy", update_policy,
                       "never, on-failure or always")
          ->check(CLI::IsMember({"never", "on-failure", "always"}));
  std::string update_crash_policy;
  auto* u_crash_policy =
      update_cmd
          ->add_option("--on-guest-crash", update_crash_policy,
                       "stop, restart or preserve (any state; a running VM's "
                       "worker is told at once)")
          ->check(CLI::IsMember({"stop", "restart", "preserve"}));
  auto* autostart_cmd = app.add_subcommand(
      "autostart", "Start the VM whenever vmms starts (on) or not (off)");
  std::string autostart_value;
  autostart_cmd->add_option("NAME", name, "VM name")->required();
  autostart_cmd->add_option("VALUE", autostart_value, "on or off")
      ->required()
      ->check(CLI::IsMember({"on", "off"}));
  auto* stats_cmd = app.add_subcommand(
      "stats",
      "Runtime figures: one VM (CPU time and exits per VP, worker memory, "
      "console bytes) or, without NAME, a table of all");
  std::string stats_name;
  stats_cmd->add_option("NAME", stats_name, "VM name");
  auto* nic_cmd = app.add_subcommand(
      "nic", "A VM's network adapters (add and remove while Off or Crashed)");
  nic_cmd->require_subcommand(1);
  std::string nic_spec, nic_which;
  auto* nic_add = nic_cmd->add_subcommand(
      "add",
      "Add an adapter: bridge=BRIDGE[,mac=MAC][,mtu=N] or "
      "tap[,mac=MAC][,mtu=N] (unattached)");
  auto* nic_remove =
      nic_cmd->add_subcommand("remove", "Remove an adapter by MAC or index");
  auto* nic_list = nic_cmd->add_subcommand(
      "list", "List the adapters with their host interfaces");
  for (CLI::App* cmd : {nic_add, nic_remove, nic_list})
    cmd->add_option("NAME", name, "VM name")->required();
  nic_add->add_option("SPEC", nic_spec, "The adapter")->required();
  nic_remove->add_option("NIC", nic_which, "Its MAC or index")->required();
  auto* checkpoint_cmd = app.add_subcommand(
      "checkpoint",
      "A VM's checkpoints (Off or Saved VMs): create, list, apply, delete");
  checkpoint_cmd->require_subcommand(1);
  std::string checkpoint_name;
  auto* checkpoint_create = checkpoint_cmd->add_subcommand(
      "create",
      "Checkpoint the VM: its configuration, disks (qcow2 overlays from "
      "now on) and saved state; a child of the current checkpoint");
  auto* checkpoint_list = checkpoint_cmd->add_subcommand(
      "list", "The VM's checkpoint tree (* = current)");
  auto* checkpoint_apply = checkpoint_cmd->add_subcommand(
      "apply",
      "Revert the VM to a checkpoint (its changes since are discarded)");
  auto* checkpoint_delete = checkpoint_cmd->add_subcommand(
      "delete", "Remove a checkpoint (its children stay valid)");
  for (CLI::App* cmd : {checkpoint_create, checkpoint_list, checkpoint_apply,
                        checkpoint_delete})
    cmd->add_option("NAME", name, "VM name")->required();
  for (CLI::App* cmd : {checkpoint_create, checkpoint_apply, checkpoint_delete})
    cmd->add_option("CHECKPOINT", checkpoint_name, "Checkpoint name")
        ->required();
  auto* libvirt_cmd = app.add_subcommand(
      "libvirt",
      "libvirt domains vmms does not manage (vmms --libvirt-uri): list, "
      "adopt, release");
  libvirt_cmd->require_subcommand(1);
  std::string libvirt_domain, libvirt_name;
  auto* libvirt_list = libvirt_cmd->add_subcommand(
      "list", "The domains of vmms's libvirt that are no VM of vmms");
  auto* libvirt_adopt = libvirt_cmd->add_subcommand(
      "adopt",
      "Bring a defined domain under vmms as a VM (its XML kept as is)");
  libvirt_adopt->add_option("DOMAIN", libvirt_domain, "Its name or UUID")
      ->required();
  libvirt_adopt->add_option("--name", libvirt_name,
                            "The VM's name (default: the domain's)");
  auto* libvirt_release = libvirt_cmd->add_subcommand(
      "release",
      "Hand a VM's domain back to libvirt: vmms forgets the VM, the domain "
      "stays defined and running as it is");
  libvirt_release->add_option("NAME", name, "VM name")->required();
  auto* hostinfo_cmd = app.add_subcommand(
      "hostinfo",
      "The host: KVM version, capabilities and limits, CPUs, memory");
  for (CLI::App* cmd :
       {pause_cmd, resume_cmd, reset_cmd, reboot_cmd, shutdown_cmd, update_cmd,
        save_cmd, discard_saved_cmd}) {
    cmd->add_option("NAME", name, "VM name")->required();
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return vmctl::kExitUsage;
  }

  if (request_timeout_s > 0) {
    vmctl::OverrideRequestTimeout(std::chrono::seconds(request_timeout_s));
  }
  if (socket.empty()) socket = vmctl::DefaultSocketPath();
  vmctl::Session session = vmctl::Connect(socket, json, std::cout, std::cerr);
  session.in_fd = STDIN_FILENO;
  if (*create_cmd) {
    if (*c_crash_policy) {
      hvstack::v1::GuestCrashPolicy policy;
      vmctl::ParseGuestCrashPolicy(create_crash_policy, &policy);
      create.on_guest_crash = policy;
    }
    return vmctl::CreateCommand(session, create);
  }
  if (*list_cmd) return vmctl::ListCommand(session);
  if (*show_cmd) return vmctl::ShowCommand(session, name);
  if (*start_cmd) return vmctl::StartCommand(session, name);
  if (*stop_cmd) return vmctl::StopCommand(session, name);
  if (*delete_cmd) return vmctl::DeleteCommand(session, name);
  if (*events_cmd) return vmctl::EventsCommand(session, since, follow);
  if (*console_cmd) return vmctl::ConsoleCommand(session, name, !no_follow);
  if (*pause_cmd) return vmctl::PauseCommand(session, name);
  if (*resume_cmd) return vmctl::ResumeCommand(session, name);
  if (*save_cmd) return vmctl::SaveCommand(session, name);
  if (*discard_saved_cmd) return vmctl::DiscardSavedCommand(session, name);
  if (*reset_cmd) return vmctl::ResetCommand(session, name);
  if (*reboot_cmd) return vmctl::RebootCommand(session, name);
  if (*shutdown_cmd)
    return vmctl::ShutdownCommand(session, name, shutdown_timeout, force_after);
  if (*update_cmd) {
    if (*u_cpus) update.cpus = update_cpus;
    if (*u_memory) update.memory_mib = update_memory;
    if (*u_kernel) update.kernel = update_kernel;
    if (*u_cmdline) update.cmdline = update_cmdline;
    if (*u_initrd) update.initrd = update_initrd;
    if (*u_autostart) update.autostart = update_autostart == "on";
    if (*u_policy) {
      hvstack::v1::RestartPolicy policy;
      vmctl::ParseRestartPolicy(update_policy, &policy);
      update.restart_policy = policy;
    }
    if (*u_crash_policy) {
      hvstack::v1::GuestCrashPolicy policy;
      vmctl::ParseGuestCrashPolicy(update_crash_policy, &policy);
      update.on_guest_crash = policy;
    }
    return vmctl::UpdateCommand(session, name, update);
  }
  if (*autostart_cmd)
    return vmctl::AutostartCommand(session, name, autostart_value == "on");
  if (*stats_cmd) return vmctl::StatsCommand(session, stats_name);
  if (*disk_add) return vmctl::DiskAddCommand(session, name, disk_spec);
  if (*disk_remove) return vmctl::DiskRemoveCommand(session, name, disk_target);
  if (*disk_list) return vmctl::DiskListCommand(session, name);
  if (*disk_create)
    return vmctl::DiskCreateCommand(session, disk_path, disk_size, disk_format);
  if (*hostinfo_cmd) return vmctl::HostInfoCommand(session);
  if (*libvirt_list) return vmctl::LibvirtListCommand(session);
  if (*libvirt_adopt)
    return vmctl::LibvirtAdoptCommand(session, libvirt_domain, libvirt_name);
  if (*libvirt_release) return vmctl::LibvirtReleaseCommand(session, name);
  if (*checkpoint_create)
    return vmctl::CheckpointCreateCommand(session, name, checkpoint_name);
  if (*checkpoint_list) return vmctl::CheckpointListCommand(session, name);
  if (*checkpoint_apply)
    return vmctl::CheckpointApplyCommand(session, name, checkpoint_name);
  if (*checkpoint_delete)
    return vmctl::CheckpointDeleteCommand(session, name, checkpoint_name);
  if (*nic_add) return vmctl::NicAddCommand(session, name, nic_spec);
  if (*nic_remove) return vmctl::NicRemoveCommand(session, name, nic_which);
  if (*nic_list) return vmctl::NicListCommand(session, name);
  if (*kvp_get) return vmctl::KvpGetCommand(session, name, kvp_pool, kvp_key);
  if (*kvp_set)
    return vmctl::KvpSetCommand(session, name, kvp_pool, kvp_key, kvp_value);
  if (*kvp_list) return vmctl::KvpListCommand(session, name, kvp_pool);
  return vmctl::kExitUsage;
}
