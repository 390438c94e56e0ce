#ifndef HVSTACK_CLI_COMMANDS_H_
#define HVSTACK_CLI_COMMANDS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "proto/hvstack/v1/vm.grpc.pb.h"

namespace vmctl {

// What every subcommand needs: a connection to vmms and how to print.
struct Session {
  std::string socket_path;
  bool json = false;
  std::unique_ptr<hvstack::v1::VmService::StubInterface> stub;
  std::ostream* out;
  std::ostream* err;
  // Where console input comes from (main: stdin); -1 for none.
  int in_fd = -1;
  // The stub's channel (null for a stub made elsewhere): tells an
  // UNAVAILABLE vmms sent from one of a vmms nobody reached.
  std::shared_ptr<grpc::Channel> channel;
};

// Connects (lazily, as gRPC does) to vmms at unix:`socket_path`.
Session Connect(const std::string& socket_path, bool json, std::ostream& out,
                std::ostream& err);

struct CreateArgs {
  std::string name;
  std::string
      kernel;  // Made absolute here: vmms does not share our working directory.
  uint64_t memory_mib = 256;
  uint32_t cpus = 1;
  std::string cmdline;
  std::string initrd;  // Made absolute too; empty for none.
  // VmConfig.disable_enlightenments: no Hyper-V interface, no VMBus.
  bool no_enlightenments = false;
  // --disk PATH[,format=raw|qcow2|vhdx][,readonly][,lun=N], in order.
  std::vector<std::string> disks;
  // VmConfig.on_guest_crash; unset: vmms's default (stop).
  std::optional<hvstack::v1::GuestCrashPolicy> on_guest_crash;
  // Network adapters, one `--nic` spec each (ParseNicSpec, nic_commands.h).
  std::vector<std::string> nics;
  // VmConfig.backend: "hvstack" (default) or "libvirt"; libvirt's accelerator
  // "kvm" (default) or "tcg".
  std::string backend = "hvstack";
  std::string accelerator = "kvm";
};

// Disks (disk_commands.cc).
// "PATH[,format=F][,readonly][,lun=N]" -> a Disk with an absolute path;
// false and `error` set for a malformed spec.
bool ParseDiskSpec(const std::string& spec, hvstack::v1::Disk* disk,
                   std::string* error);
// "raw", "qcow2", "vhdx" -> the enum; false for anything else.
bool ParseDiskFormat(const std::string& text, hvstack::v1::DiskFormat* format);
// "10G", "512M", "1048576", "2TiB": binary units; false unless a non-zero
// multiple of 512 bytes of at most 64 TiB.
bool ParseDiskSize(const std::string& text, uint64_t* bytes,
                   std::string* error);
int DiskAddCommand(Session& session, const std::string& name,
                   const std::string& spec);
// `target`: the disk's path, or its address "C:T:L".
int DiskRemoveCommand(Session& session, const std::string& name,
                      const std::string& target);
int DiskListCommand(Session& session, const std::string& name);
// Creates an empty image on this machine as the calling user (client side:
// the file belongs to whoever asked, with their permissions; vmms, which
// runs as root, never creates files at paths a client names): raw is a
// sparse file, qcow2/vhdx come from `qemu-img create`. Never overwrites.
int DiskCreateCommand(Session& session, const std::string& path,
                      const std::string& size, const std::string& format);

// Each returns vmctl's exit code (exit_codes.h) and prints the result, or
// "vmctl: CODE: message" to the error stream.
int CreateCommand(Session& session, const CreateArgs& args);
int ListCommand(Session& session);
int ShowCommand(Session& session, const std::string& name);
int StartCommand(Session& session, const std::string& name);
int StopCommand(Session& session, const std::string& name);
int DeleteCommand(Session& session, const std::string& name);
// The event log (WatchEvents): events after `since` (0: the oldest retained),
// then with `follow` new ones until interrupted. A table, or with --json one
// canonical JSON object per line (JSON Lines). Output is flushed per event.
int EventsCommand(Session& session, uint64_t since, bool follow);
// The escape key that detaches an interactive console: Ctrl-], as in telnet
// and virsh.
inline constexpr char kConsoleEscape = 0x1D;

// follow = false: the retained output, then exit (StreamConsole).
// follow = true: AttachConsole. Output is written raw until the VM stops;
// bytes read from session.in_fd go to the guest. When in_fd is a terminal it
// is put in raw mode (restored on every exit path) and Ctrl-] detaches; other
// input (a pipe, a file) is forwarded as it is, and its end only ends the
// input: the output is followed until the VM stops. Falls back to
// StreamConsole against a vmms without AttachConsole.
int ConsoleCommand(Session& session, const std::string& name, bool follow);

// Key-value exchange with a running guest (vmctl kvp get|set|list NAME).
// `pool`: external (default), guest, auto (the guest's intrinsic items),
// auto_external, auto_internal. get prints the value, list "key=value" lines.
int KvpGetCommand(Session& session, const std::string& name,
                  const std::string& pool, const std::string& key);
int KvpSetCommand(Session& session, const std::string& name,
                  const std::string& pool, const std::string& key,
                  const std::string& value);
int KvpListCommand(Session& session, const std::string& name,
                   const std::string& pool);
// "external" -> KVP_POOL_EXTERNAL ...; false for an unknown name.
bool ParseKvpPool(const std::string& text, hvstack::v1::KvpPool* pool);

// Lifecycle operations (lifecycle_commands.cc); each prints the VM like
// show.
int PauseCommand(Session& session, const std::string& name);
// Issue 14: SaveVm (Running/Paused -> Saved; `vmctl start` restores) and
// DiscardSavedState (Saved -> Off).
int SaveCommand(Session& session, const std::string& name);
int DiscardSavedCommand(Session& session, const std::string& name);
int ResumeCommand(Session& session, const std::string& name);
int ResetCommand(Session& session, const std::string& name);
int RebootCommand(Session& session, const std::string& name);
// ShutdownVm with `timeout_seconds`; `force_after`: stop the VM hard when the
// guest has not powered off by then (FORCE_OFF), else fail and leave it
// running (FAIL).
int ShutdownCommand(Session& session, const std::string& name,
                    double timeout_seconds, bool force_after);

// UpdateVm: only the fields given are sent (and named in the field mask).
struct UpdateArgs {
  std::optional<uint32_t> cpus;
  std::optional<uint64_t> memory_mib;
  std::optional<std::string> kernel;  // Made absolute.
  std::optional<std::string> cmdline;
  std::optional<std::string> initrd;  // Made absolute; "" removes it.
  std::optional<bool> autostart;
  std::optional<hvstack::v1::RestartPolicy> restart_policy;
  std::optional<hvstack::v1::GuestCrashPolicy> on_guest_crash;
};
int UpdateCommand(Session& session, const std::string& name,
                  const UpdateArgs& args);
int AutostartCommand(Session& session, const std::string& name, bool on);
// "never", "on-failure", "always"; false for anything else.
bool ParseRestartPolicy(const std::string& text,
                        hvstack::v1::RestartPolicy* policy);
// "stop", "restart", "preserve"; false for anything else.
bool ParseGuestCrashPolicy(const std::string& text,
                           hvstack::v1::GuestCrashPolicy* policy);
// GetVmStats NAME, or ListVmStats (a table) when `name` is empty.
int StatsCommand(Session& session, const std::string& name);
int HostInfoCommand(Session& session);

}  // namespace vmctl

#endif  // HVSTACK_CLI_COMMANDS_H_
