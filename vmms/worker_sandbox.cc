#include "vmms/worker_sandbox.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace vmms {
namespace {

absl::Status Failed(const Vm& vm, absl::string_view step,
                    absl::string_view why) {
  return absl::FailedPreconditionError(absl::StrCat(
      "VM '", vm.name(), "': cannot prepare its sandbox: ", step, ": ", why));
}

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

uint64_t ParseOomKillCount(const std::string& contents) {
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    if (absl::ConsumePrefix(&line, "oom_kill ")) {
      uint64_t n = 0;
      if (absl::SimpleAtoi(line, &n)) return n;
    }
  }
  return 0;
}

namespace {

// Removes VM cgroups that nobody removed: their vmms was killed and never
// restarted on its state directory (tests make many such vmms). Only empty
// ones (rmdir refuses others) not changed for a minute: another vmms's VM
// that is starting has a fresh, briefly empty cgroup.
void SweepAbandonedCgroups(const sandbox::CgroupLayout& layout) {
  std::vector<std::string> roots =
      layout.version == 2
          ? std::vector<std::string>{layout.v2_root}
          : std::vector<std::string>{layout.memory_root, layout.cpu_root,
                                     layout.pids_root};
  const auto cutoff =
      std::filesystem::file_time_type::clock::now() - std::chrono::minutes(1);
  int removed = 0;
  for (const std::string& root : roots) {
    std::error_code ec;
    const std::string parent =
        absl::StrCat(root, "/", sandbox::VmCgroup::kParent);
    for (const auto& entry : std::filesystem::directory_iterator(parent, ec)) {
      std::error_code time_ec;
      if (!entry.is_directory(time_ec)) continue;
      const auto changed = std::filesystem::last_write_time(entry, time_ec);
      if (time_ec || changed > cutoff) continue;
      if (::rmdir(entry.path().c_str()) == 0) ++removed;
    }
  }
  if (removed > 0)
    spdlog::info("removed {} abandoned VM cgroup directories", removed);
}

}  // namespace

absl::StatusOr<std::unique_ptr<SandboxHost>> SandboxHost::Create() {
  absl::StatusOr<sandbox::UidAllocator> uids = sandbox::UidAllocator::Create();
  if (!uids.ok()) return uids.status();
  absl::StatusOr<sandbox::CgroupLayout> layout = sandbox::DetectCgroupLayout();
  if (!layout.ok()) return layout.status();
  SweepAbandonedCgroups(*layout);
  spdlog::info(
      "worker sandbox: uids {}..{}, cgroup v{}, net namespace pool of 2",
      uids->base(), uids->base() + uids->count() - 1, layout->version);
  return std::unique_ptr<SandboxHost>(
      new SandboxHost(*std::move(uids), *std::move(layout)));
}

absl::StatusOr<SandboxHost::Prepared> SandboxHost::Prepare(
    VmStore& store, const Vm& vm, const RuntimePaths& paths) {
  absl::StatusOr<uint32_t> slot = store.AssignUidSlot(
      vm.uuid(), [this](uint32_t s) { return uids_.ForSlot(s).ok(); },
      uids_.count());
  if (!slot.ok()) return Failed(vm, "uid slot", slot.status().message());
  absl::StatusOr<sandbox::Identity> id = uids_.ForSlot(*slot);
  if (!id.ok()) return Failed(vm, "uid", id.status().message());

  // The runtime dir is the only host directory the worker can write: its
  // own, and nobody else's.
  if (::chown(paths.dir.c_str(), id->uid, id->gid) != 0 ||
      ::chmod(paths.dir.c_str(), 0700) != 0) {
    return Failed(vm, absl::StrCat("runtime dir ", paths.dir),
                  std::strerror(errno));
  }
  // Files an earlier worker (or an unsandboxed run) left: the console log
  // keeps growing across reboots and starts.
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(paths.dir, ec)) {
    if (::lchown(entry.path().c_str(), id->uid, id->gid) != 0) {
      spdlog::warn("VM {}: cannot chown {}: {}", vm.name(),
                   entry.path().string(), std::strerror(errno));
    }
  }

  sandbox::ResourceLimits limits =
      sandbox::LimitsForVm(vm.config().memory_mib() << 20, vm.config().vcpus());
  absl::StatusOr<sandbox::VmCgroup> cgroup =
      sandbox::VmCgroup::Create(layout_, vm.uuid(), limits);
  if (!cgroup.ok()) return Failed(vm, "cgroup", cgroup.status().message());
  return Prepared{*id, limits, *std::move(cgroup)};
}

std::optional<sandbox::Identity> SandboxHost::IdentityOf(uint32_t slot) const {
  absl::StatusOr<sandbox::Identity> id = uids_.ForSlot(slot);
  if (!id.ok()) return std::nullopt;
  return *id;
}

std::optional<std::string> SandboxHost::OutOfMemory(
    const std::string& uuid) const {
  sandbox::VmCgroup cgroup = sandbox::VmCgroup::Existing(layout_, uuid);
  const std::string& dir = cgroup.dirs().front();  // memory (v1) or the one
  const std::string events = ReadSmallFile(
      dir + (layout_.version == 2 ? "/memory.events" : "/memory.oom_control"));
  if (ParseOomKillCount(events) == 0) return std::nullopt;
  uint64_t limit = 0;
  (void)absl::SimpleAtoi(
      absl::StripAsciiWhitespace(ReadSmallFile(cgroup.LimitFile("memory"))),
      &limit);
  return absl::StrCat("out of memory (cgroup limit ", limit >> 20, " MiB)");
}

absl::Status SandboxHost::JoinCgroup(const std::string& uuid, pid_t pid) const {
  return sandbox::VmCgroup::Existing(layout_, uuid).AddProcess(pid);
}

void SandboxHost::RemoveCgroup(const std::string& uuid) const {
  if (absl::Status s = sandbox::VmCgroup::Existing(layout_, uuid).Remove();
      !s.ok()) {
    spdlog::warn("VM {}: cannot remove its cgroup: {}", uuid,
                 std::string(s.message()));
  }
}

}  // namespace vmms
