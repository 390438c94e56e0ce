#include "vmms/sandbox/cgroup.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sandbox {
namespace {

absl::Status Errno(const std::string& what) {
  const int error = errno;
  return absl::Status(
      absl::ErrnoToStatusCode(error),
      absl::StrCat("sandbox: cgroup: ", what, ": ", std::strerror(error)));
}

bool IsDir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status WriteFile(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Errno(absl::StrCat("open ", path));
  ssize_t n = ::write(fd, value.data(), value.size());
  int saved = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    errno = saved;
    return Errno(absl::StrCat("write \"", value, "\" to ", path));
  }
  return absl::OkStatus();
}

absl::Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return Errno(absl::StrCat("mkdir ", path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CgroupLayout> DetectCgroupLayout(const std::string& root) {
  CgroupLayout layout;
  struct statfs fs;
  if (::statfs(root.c_str(), &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC) {
    std::string controllers = ReadSmallFile(root + "/cgroup.controllers");
    for (const char* c : {"memory", "pids", "cpu"}) {
      if (!absl::StrContains(controllers, c)) {
        return absl::FailedPreconditionError(
            absl::StrCat("sandbox: cgroup v2 at ", root, " lacks the ", c,
                         " controller (has: ", controllers, ")"));
      }
    }
    layout.version = 2;
    layout.v2_root = root;
    return layout;
  }
  layout.version = 1;
  layout.memory_root = root + "/memory";
  layout.cpu_root = root + "/cpu";  // often a link to cpu,cpuacct
  layout.pids_root = root + "/pids";
  for (const std::string* dir :
       {&layout.memory_root, &layout.cpu_root, &layout.pids_root}) {
    if (!IsDir(*dir)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "sandbox: no cgroup v2 at ", root, " and no v1 hierarchy at ", *dir,
          "; mount the memory, cpu and pids controllers"));
    }
  }
  return layout;
}

VmCgroup VmCgroup::Existing(const CgroupLayout& layout,
                            const std::string& vm_id) {
  std::vector<std::string> dirs;
  if (layout.version == 2) {
    dirs.push_back(absl::StrCat(layout.v2_root, "/", kParent, "/", vm_id));
  } else {
    for (const std::string& root :
         {layout.memory_root, layout.cpu_root, layout.pids_root}) {
      dirs.push_back(absl::StrCat(root, "/", kParent, "/", vm_id));
    }
  }
  return VmCgroup(layout, std::move(dirs));
}

std::string VmCgroup::LimitFile(const std::string& what) const {
  if (layout_.version == 2) {
    if (what == "memory") return dirs_[0] + "/memory.max";
    if (what == "pids") return dirs_[0] + "/pids.max";
    return dirs_[0] + "/cpu.max";
  }
  if (what == "memory") return dirs_[0] + "/memory.limit_in_bytes";
  if (what == "cpu") return dirs_[1] + "/cpu.cfs_quota_us";
  return dirs_[2] + "/pids.max";
}

absl::StatusOr<VmCgroup> VmCgroup::Create(const CgroupLayout& layout,
                                          const std::string& vm_id,
                                          const ResourceLimits& limits) {
  if (vm_id.empty() || absl::StrContains(vm_id, "/") || vm_id[0] == '.') {
    return absl::InvalidArgumentError(
        absl::StrCat("sandbox: cgroup name \"", vm_id, "\" is not a name"));
  }
  VmCgroup cg = Existing(layout, vm_id);
  if (layout.version == 2) {
    // Controllers must be enabled on every level above the leaf.
    const std::string parent = absl::StrCat(layout.v2_root, "/", kParent);
    if (absl::Status s = MakeDir(parent); !s.ok()) return s;
    for (const std::string& dir : {layout.v2_root, parent}) {
      if (absl::Status s =
              WriteFile(dir + "/cgroup.subtree_control", "+memory +pids +cpu");
          !s.ok()) {
        return s;
      }
    }
    if (absl::Status s = MakeDir(cg.dirs_[0]); !s.ok()) return s;
    std::string cpu =
        limits.cpu_quota_us == 0
            ? absl::StrCat("max ", limits.cpu_period_us)
            : absl::StrCat(limits.cpu_quota_us, " ", limits.cpu_period_us);
    for (const auto& [file, value] :
         {std::pair<std::string, std::string>{
              "memory.max", absl::StrCat(limits.memory_bytes)},
          {"memory.swap.max", "0"},
          {"pids.max", absl::StrCat(limits.pids_max)},
          {"cpu.max", cpu}}) {
      absl::Status s = WriteFile(cg.dirs_[0] + "/" + file, value);
      // memory.swap.max is absent on hosts without swap accounting.
      if (!s.ok() && file != "memory.swap.max") return s;
    }
    return cg;
  }
  for (const std::string& root :
       {layout.memory_root, layout.cpu_root, layout.pids_root}) {
    if (absl::Status s = MakeDir(absl::StrCat(root, "/", kParent)); !s.ok()) {
      return s;
    }
  }
  for (const std::string& dir : cg.dirs_) {
    if (absl::Status s = MakeDir(dir); !s.ok()) return s;
  }
  if (absl::Status s =
          WriteFile(cg.LimitFile("memory"), absl::StrCat(limits.memory_bytes));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteFile(cg.dirs_[1] + "/cpu.cfs_period_us",
                                 absl::StrCat(limits.cpu_period_us));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteFile(
          cg.LimitFile("cpu"),
          limits.cpu_quota_us == 0 ? "-1" : absl::StrCat(limits.cpu_quota_us));
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          WriteFile(cg.LimitFile("pids"), absl::StrCat(limits.pids_max));
      !s.ok()) {
    return s;
  }
  return cg;
}

absl::StatusOr<std::vector<base::ScopedFd>> VmCgroup::OpenProcsFiles() const {
  std::vector<base::ScopedFd> fds;
  for (const std::string& dir : dirs_) {
    std::string path = dir + "/cgroup.procs";
    base::ScopedFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.valid()) return Errno(absl::StrCat("open ", path));
    fds.push_back(std::move(fd));
  }
  return fds;
}

absl::Status VmCgroup::AddProcess(pid_t pid) const {
  for (const std::string& dir : dirs_) {
    if (absl::Status s = WriteFile(dir + "/cgroup.procs", absl::StrCat(pid));
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status VmCgroup::Remove() const {
  for (const std::string& dir : dirs_) {
    // A reaped worker's threads may still be leaving the cgroup: a few
    // retries over ~200 ms, never an unbounded wait.
    for (int attempt = 0;; ++attempt) {
      if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) break;
      if (errno != EBUSY || attempt == 40) {
        return Errno(absl::StrCat("rmdir ", dir));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  return absl::OkStatus();
}

}  // namespace sandbox
