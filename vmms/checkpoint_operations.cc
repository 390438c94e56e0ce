// VmManager's checkpoints (issue 14): a Hyper-V-style tree per VM, for Off,
// Crashed and Saved VMs of hvstack's own backend.
//
// Disks: at a checkpoint each writable disk's current image is frozen (never
// written again) and the VM goes on writing to a new qcow2 overlay on top of
// it (`qemu-img create -f qcow2 -b FROZEN -F FORMAT`), kept under
// <state dir>/vms/<uuid>/checkpoints/disks/. This works for raw, qcow2 and
// VHDX images alike (qcow2 can have any of them as its backing file), so raw
// disks need neither a reflink nor a copy: the VM's disk becomes the qcow2
// overlay (served through qemu-nbd like any qcow2 disk). Read-only disks are
// recorded as they are. The user's own image is the root of the chain and is
// never modified or deleted by vmms.
// Apply: a fresh overlay on each of the checkpoint's frozen images (the
// VM's changes since are discarded, as Hyper-V does), the configuration as it
// was, and the checkpoint's saved state (hard links: the files are never
// written in place) or none.
// Delete: every overlay whose backing file is the deleted checkpoint's own
// frozen overlay is rebased (`qemu-img rebase`, safe mode: the data that
// overlay contributed is copied up) onto the image below it, then the
// overlay goes; children become children of the deleted checkpoint's parent.
//
// Order, for crash safety: files first (new overlays, links, rebases: each
// leaves every recorded chain readable), then one SQLite transaction, then
// removal of what no row names any more.

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/time_util.h"
#include "spdlog/spdlog.h"
#include "vmms/disk_image.h"
#include "vmms/disk_table.h"
#include "vmms/qemu_process.h"
#include "vmms/runtime_paths.h"
#include "vmms/validation.h"
#include "vmms/vm_manager.h"

namespace vmms {
namespace {

using hvstack::v1::Checkpoint;
using hvstack::v1::Disk;

// qemu-img on a large image copies data (rebase): generous.
constexpr absl::Duration kQemuImgTimeout = absl::Minutes(10);

std::string CheckpointsDir(const std::string& state_dir,
                           const std::string& uuid) {
  return RuntimePathsFor(state_dir, uuid).dir + "/checkpoints";
}

bool IsOwned(const std::string& path, const std::string& dir) {
  return absl::StartsWith(path, dir + "/");
}

absl::Status RunQemuImg(const std::vector<std::string>& args,
                        absl::string_view what) {
  absl::StatusOr<std::string> qemu_img = LocateQemuTool("qemu-img");
  if (!qemu_img.ok()) return qemu_img.status();
  std::vector<std::string> argv = {*qemu_img};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<ToolResult> run = RunConfinedTool(argv, kQemuImgTimeout);
  if (!run.ok()) return run.status();
  if (!WIFEXITED(run->wait_status) || WEXITSTATUS(run->wait_status) != 0) {
    std::string err = run->err.substr(0, run->err.find('\n'));
    absl::string_view view = err;
    absl::ConsumePrefix(&view, "qemu-img: ");
    return absl::InternalError(absl::StrCat(what, ": qemu-img failed: ", view));
  }
  return absl::OkStatus();
}

// A new qcow2 overlay at `overlay` on top of `base` (read as `format`).
absl::Status CreateOverlay(const std::string& base,
                           hvstack::v1::DiskFormat format,
                           const std::string& overlay) {
  return RunQemuImg({"create", "-q", "-f", "qcow2", "-b", base, "-F",
                     DiskFormatName(format), "--", overlay},
                    absl::StrCat("overlay ", overlay, " on ", base));
}

absl::Status MakeDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create ", dir, ": ", ec.message()));
  }
  ::chmod(dir.c_str(), 0700);
  return absl::OkStatus();
}

absl::Status Link(const std::string& from, const std::string& to) {
  ::unlink(to.c_str());
  if (::link(from.c_str(), to.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot link ", from, " to ", to,
                                            ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

void RemoveQuietly(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) spdlog::warn("cannot remove {}: {}", path, ec.message());
}

// A name unique within the VM's checkpoint directory.
std::string Stamp() { return absl::StrCat(absl::ToUnixMicros(absl::Now())); }

absl::StatusOr<const CheckpointRecord*> Find(
    const std::vector<CheckpointRecord>& all, const Vm& vm,
    const std::string& name) {
  for (const CheckpointRecord& r : all) {
    if (r.checkpoint.name() == name) return &r;
  }
  return absl::NotFoundError(
      absl::StrCat("VM '", vm.name(), "' has no checkpoint '", name,
                   "' (vmctl checkpoint list ", vm.name(), " shows them)"));
}

std::vector<Checkpoint> Protos(const std::vector<CheckpointRecord>& all) {
  std::vector<Checkpoint> out;
  for (const CheckpointRecord& r : all) out.push_back(r.checkpoint);
  return out;
}

// A checkpoint of `vm` (Off, Crashed or Saved; its operation lock held).
absl::StatusOr<Checkpoint> CheckpointOf(VmStore& store,
                                        const std::string& state_dir,
                                        const Vm& vm,
                                        const std::string& checkpoint) {
  absl::StatusOr<std::vector<CheckpointRecord>> all =
      store.Checkpoints(vm.uuid());
  if (!all.ok()) return all.status();
  for (const CheckpointRecord& r : *all) {
    if (r.checkpoint.name() == checkpoint) {
      return absl::AlreadyExistsError(absl::StrCat("VM '", vm.name(),
                                                   "' has a checkpoint named '",
                                                   checkpoint, "' already"));
    }
  }
  const std::string dir = CheckpointsDir(state_dir, vm.uuid());
  const std::string stamp = Stamp();
  const std::string own_dir = absl::StrCat(dir, "/", checkpoint, ".", stamp);
  if (absl::Status s = MakeDir(dir + "/disks"); !s.ok()) return s;
  std::vector<std::string> made;  // removed if the record fails
  auto undo = [&] {
    for (const std::string& f : made) RemoveQuietly(f);
    RemoveQuietly(own_dir);
  };

  Checkpoint c;
  c.set_name(checkpoint);
  *c.mutable_create_time() =
      google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
          absl::ToUnixMicros(absl::Now()));
  c.set_vm_state(vm.state() == hvstack::v1::VM_STATE_SAVED
                     ? hvstack::v1::VM_STATE_SAVED
                     : hvstack::v1::VM_STATE_OFF);
  *c.mutable_config() = vm.config();
  std::vector<CheckpointDisk> frozen;
  std::vector<Disk> vm_disks;
  for (const Disk& d : vm.config().disks()) {
    frozen.push_back({d.path(), d.format(), IsOwned(d.path(), dir)});
    if (d.read_only()) {
      vm_disks.push_back(d);
      continue;
    }
    Disk overlay = d;
    overlay.set_path(absl::StrCat(dir, "/disks/lun", d.address().lun(), ".",
                                  stamp, ".qcow2"));
    overlay.set_format(hvstack::v1::DISK_FORMAT_QCOW2);
    if (absl::Status s = CreateOverlay(d.path(), d.format(), overlay.path());
        !s.ok()) {
      undo();
      return absl::Status(s.code(), absl::StrCat("VM '", vm.name(), "' disk ",
                                                 d.path(), ": ", s.message()));
    }
    made.push_back(overlay.path());
    vm_disks.push_back(overlay);
  }
  if (vm.state() == hvstack::v1::VM_STATE_SAVED) {
    hvstack::v1::SavedStateInfo saved = vm.saved_state();
    const std::string state = own_dir + "/state";
    const std::string memory = own_dir + "/memory";
    if (absl::Status s = MakeDir(own_dir); !s.ok()) {
      undo();
      return s;
    }
    if (absl::Status s = Link(saved.state_file(), state); !s.ok()) {
      undo();
      return s;
    }
    if (absl::Status s = Link(saved.memory_file(), memory); !s.ok()) {
      undo();
      return s;
    }
    saved.set_state_file(state);
    saved.set_memory_file(memory);
    *c.mutable_saved_state() = saved;
  }
  absl::StatusOr<Vm> recorded =
      store.RecordCheckpoint(vm.uuid(), c, frozen, vm_disks);
  if (!recorded.ok()) {
    undo();
    return recorded.status();
  }
  spdlog::info("VM {}: checkpoint '{}' created ({} disk(s), VM {})", vm.name(),
               checkpoint, frozen.size(), StateName(c.vm_state()));
  absl::StatusOr<std::vector<CheckpointRecord>> after =
      store.Checkpoints(vm.uuid());
  if (!after.ok()) return after.status();
  absl::StatusOr<const CheckpointRecord*> mine = Find(*after, vm, checkpoint);
  if (!mine.ok()) return mine.status();
  return (*mine)->checkpoint;
}

}  // namespace

absl::StatusOr<Checkpoint> VmManager::CreateCheckpoint(
    const std::string& name, const std::string& checkpoint,
    absl::Time deadline) {
  if (absl::Status s = ValidateVmName(checkpoint); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint name: ", s.message()));
  }
  absl::StatusOr<VmOpLocks::Guard> guard =
      op_locks_.Acquire(name, RequestName(VmRequest::kCheckpoint), deadline);
  if (!guard.ok()) return guard.status();
  absl::StatusOr<Vm> vm = store_->Get(name);
  if (!vm.ok()) return vm.status();
  if (vm->config().backend() == hvstack::v1::BACKEND_LIBVIRT) {
    return absl::FailedPreconditionError(
        absl::StrCat("VM '", name,
                     "' runs on libvirt: use libvirt's snapshots (virsh "
                     "snapshot-create) for it"));
  }
  const hvstack::v1::VmState prior = vm->state();
  if (prior != hvstack::v1::VM_STATE_RUNNING &&
      prior != hvstack::v1::VM_STATE_PAUSED) {
    if (absl::Status s = CheckRequest(*vm, VmRequest::kCheckpoint); !s.ok())
      return s;
    return CheckpointOf(*store_, options_.state_dir, *vm, checkpoint);
  }
  // A running VM: saved (its worker ends), checkpointed as a Saved VM, then
  // restored by a fresh worker: the guest goes on from where it was.
  absl::StatusOr<std::vector<CheckpointRecord>> all =
      store_->Checkpoints(vm->uuid());
  if (!all.ok()) return all.status();
  for (const CheckpointRecord& r : *all) {
    if (r.checkpoint.name() == checkpoint) {
      return absl::AlreadyExistsError(absl::StrCat(
          "VM '", name, "' has a checkpoint named '", checkpoint, "' already"));
    }
  }
  spdlog::info(
      "VM {}: checkpoint '{}' of the running VM: save, checkpoint, "
      "restore",
      name, checkpoint);
  absl::StatusOr<Vm> saved = BackendOf(*vm)->Save(*vm);
  if (!saved.ok()) {
    return absl::Status(
        saved.status().code(),
        absl::StrCat("checkpoint '", checkpoint,
                     "' not created: ", saved.status().message()));
  }
  absl::StatusOr<Vm> as_saved = store_->Get(name);
  absl::StatusOr<Checkpoint> made =
      as_saved.ok()
          ? CheckpointOf(*store_, options_.state_dir, *as_saved, checkpoint)
          : absl::StatusOr<Checkpoint>(as_saved.status());
  absl::StatusOr<Vm> back = StartLocked(
      name, absl::StrCat("restored after checkpoint '", checkpoint, "'"));
  if (back.ok() && prior == hvstack::v1::VM_STATE_PAUSED) {
    back = BackendOf(*back)->Pause(*back);
  }
  if (!made.ok()) return made.status();
  if (!back.ok()) {
    return absl::Status(
        back.status().code(),
        absl::StrCat("checkpoint '", checkpoint, "' of VM '", name,
                     "' was created, but the VM could not be restored (it "
                     "stays Saved: start it): ",
                     back.status().message()));
  }
  return made;
}

absl::StatusOr<std::vector<Checkpoint>> VmManager::ListCheckpoints(
    const std::string& name) {
  absl::StatusOr<Vm> vm = store_->Get(name);
  if (!vm.ok()) return vm.status();
  absl::StatusOr<std::vector<CheckpointRecord>> all =
      store_->Checkpoints(vm->uuid());
  if (!all.ok()) return all.status();
  return Protos(*all);
}

absl::StatusOr<Vm> VmManager::ApplyCheckpoint(const std::string& name,
                                              const std::string& checkpoint,
                                              absl::Time deadline) {
  absl::StatusOr<LockedVm> locked =
      Lock(name, VmRequest::kCheckpoint, deadline);
  if (!locked.ok()) return locked.status();
  const Vm& vm = locked->vm;
  absl::StatusOr<std::vector<CheckpointRecord>> all =
      store_->Checkpoints(vm.uuid());
  if (!all.ok()) return all.status();
  absl::StatusOr<const CheckpointRecord*> found = Find(*all, vm, checkpoint);
  if (!found.ok()) return found.status();
  const CheckpointRecord& r = **found;
  const hvstack::v1::VmConfig& config = r.checkpoint.config();
  if (static_cast<size_t>(config.disks_size()) != r.disks.size()) {
    return absl::DataLossError(
        absl::StrCat("checkpoint '", checkpoint, "' of VM '", name,
                     "' records ", r.disks.size(), " disk image(s) for ",
                     config.disks_size(), " disk(s)"));
  }
  const std::string dir = CheckpointsDir(options_.state_dir, vm.uuid());
  const std::string stamp = Stamp();
  if (absl::Status s = MakeDir(dir + "/disks"); !s.ok()) return s;
  std::vector<std::string> made;
  auto undo = [&] {
    for (const std::string& f : made) RemoveQuietly(f);
  };
  std::vector<Disk> vm_disks;
  for (int i = 0; i < config.disks_size(); ++i) {
    Disk d = config.disks(i);
    const CheckpointDisk& image = r.disks[i];
    d.set_path(image.path);
    d.set_format(image.format);
    if (!d.read_only()) {
      d.set_path(absl::StrCat(dir, "/disks/lun", d.address().lun(), ".", stamp,
                              ".qcow2"));
      d.set_format(hvstack::v1::DISK_FORMAT_QCOW2);
      if (absl::Status s = CreateOverlay(image.path, image.format, d.path());
          !s.ok()) {
        undo();
        return absl::Status(
            s.code(), absl::StrCat("VM '", name, "' checkpoint '", checkpoint,
                                   "': ", s.message()));
      }
      made.push_back(d.path());
    }
    vm_disks.push_back(d);
  }
  const RuntimePaths paths = RuntimePathsFor(options_.state_dir, vm.uuid());
  std::optional<hvstack::v1::SavedStateInfo> saved;
  if (r.checkpoint.vm_state() == hvstack::v1::VM_STATE_SAVED) {
    saved = r.checkpoint.saved_state();
    // Linked under temporary names, then renamed over the VM's own.
    const std::string state_tmp = paths.saved_state + ".ckpt";
    const std::string memory_tmp = paths.saved_memory + ".ckpt";
    absl::Status s = MakeDir(paths.saved_dir);
    if (s.ok()) s = Link(saved->state_file(), state_tmp);
    if (s.ok()) s = Link(saved->memory_file(), memory_tmp);
    if (s.ok() &&
        (::rename(state_tmp.c_str(), paths.saved_state.c_str()) != 0 ||
         ::rename(memory_tmp.c_str(), paths.saved_memory.c_str()) != 0)) {
      s = absl::InternalError(absl::StrCat("cannot put the saved state in ",
                                           paths.saved_dir, ": ",
                                           std::strerror(errno)));
    }
    if (!s.ok()) {
      RemoveQuietly(state_tmp);
      RemoveQuietly(memory_tmp);
      undo();
      return s;
    }
    saved->set_state_file(paths.saved_state);
    saved->set_memory_file(paths.saved_memory);
  }
  absl::StatusOr<Vm> applied = store_->RecordCheckpointApplied(
      vm.uuid(), r.id, checkpoint, config, vm_disks, saved);
  if (!applied.ok()) {
    undo();
    return applied.status();
  }
  // What no record names any more: the VM's previous overlays (its changes
  // since the last checkpoint, discarded) and a saved state now gone.
  std::set<std::string> kept;
  for (const CheckpointRecord& other : *all) {
    for (const CheckpointDisk& image : other.disks) kept.insert(image.path);
  }
  for (const Disk& d : vm.config().disks()) {
    if (IsOwned(d.path(), dir) && !kept.contains(d.path()))
      RemoveQuietly(d.path());
  }
  if (!saved.has_value() && vm.state() == hvstack::v1::VM_STATE_SAVED) {
    RemoveQuietly(paths.saved_state);
    RemoveQuietly(paths.saved_memory);
  }
  spdlog::info("VM {}: checkpoint '{}' applied (VM {})", name, checkpoint,
               StateName(applied->state()));
  return BackendOf(*applied)->Describe(*std::move(applied));
}

absl::StatusOr<std::vector<Checkpoint>> VmManager::DeleteCheckpoint(
    const std::string& name, const std::string& checkpoint,
    absl::Time deadline) {
  absl::StatusOr<LockedVm> locked =
      Lock(name, VmRequest::kCheckpoint, deadline);
  if (!locked.ok()) return locked.status();
  const Vm& vm = locked->vm;
  absl::StatusOr<std::vector<CheckpointRecord>> all =
      store_->Checkpoints(vm.uuid());
  if (!all.ok()) return all.status();
  absl::StatusOr<const CheckpointRecord*> found = Find(*all, vm, checkpoint);
  if (!found.ok()) return found.status();
  const CheckpointRecord& r = **found;
  const std::string dir = CheckpointsDir(options_.state_dir, vm.uuid());

  // Every image vmms made that may sit on top of this checkpoint's own
  // overlays: other checkpoints' frozen overlays and the VM's current disks.
  std::set<std::string> candidates;
  for (const CheckpointRecord& other : *all) {
    if (other.id == r.id) continue;
    for (const CheckpointDisk& image : other.disks) {
      if (image.owned) candidates.insert(image.path);
    }
  }
  for (const Disk& d : vm.config().disks()) {
    if (IsOwned(d.path(), dir)) candidates.insert(d.path());
  }
  std::vector<std::string> obsolete;
  for (const CheckpointDisk& image : r.disks) {
    if (!image.owned) continue;  // the user's image: the root, kept
    bool still_frozen = false;   // by another checkpoint (read-only disks)
    for (const CheckpointRecord& other : *all) {
      for (const CheckpointDisk& o : other.disks) {
        if (other.id != r.id && o.path == image.path) still_frozen = true;
      }
    }
    if (still_frozen) continue;
    absl::StatusOr<ImageInfo> info = ProbeImage(image.path, "qcow2");
    if (!info.ok()) {
      return absl::Status(
          info.status().code(),
          absl::StrCat("checkpoint '", checkpoint, "' image ", image.path, ": ",
                       info.status().message()));
    }
    for (const std::string& top : candidates) {
      absl::StatusOr<ImageInfo> top_info = ProbeImage(top, "qcow2");
      if (!top_info.ok()) return top_info.status();
      if (top_info->backing_file != image.path) continue;
      std::vector<std::string> args = {"rebase", "-q", "-f",
                                       "qcow2",  "-b", info->backing_file};
      if (!info->backing_file.empty()) {
        args.push_back("-F");
        args.push_back(info->backing_format.empty() ? "raw"
                                                    : info->backing_format);
      }
      args.push_back("--");
      args.push_back(top);
      if (absl::Status s = RunQemuImg(
              args, absl::StrCat("rebasing ", top, " off ", image.path));
          !s.ok()) {
        return s;
      }
      spdlog::info("VM {}: {} rebased onto {} (checkpoint '{}' deleted)", name,
                   top, info->backing_file, checkpoint);
    }
    obsolete.push_back(image.path);
  }
  absl::StatusOr<Vm> recorded =
      store_->RecordCheckpointDeleted(vm.uuid(), r.id, checkpoint);
  if (!recorded.ok()) return recorded.status();
  for (const std::string& f : obsolete) RemoveQuietly(f);
  if (r.checkpoint.has_saved_state()) {
    const std::string own =
        std::filesystem::path(r.checkpoint.saved_state().state_file())
            .parent_path()
            .string();
    if (IsOwned(own, dir)) RemoveQuietly(own);
  }
  spdlog::info("VM {}: checkpoint '{}' deleted", name, checkpoint);
  absl::StatusOr<std::vector<CheckpointRecord>> after =
      store_->Checkpoints(vm.uuid());
  if (!after.ok()) return after.status();
  return Protos(*after);
}

}  // namespace vmms
