#include "vmwp/sandbox/minimal_root.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/scoped_fd.h"

namespace sandbox {
namespace {

absl::Status Errno(const std::string& what) {
  return absl::InternalError(
      absl::StrCat("sandbox: ", what, ": ", std::strerror(errno)));
}

// A bind source, opened O_PATH before the new root hides anything: binding
// from /proc/self/fd/N then works whatever the staging mount covers.
struct Source {
  base::ScopedFd fd;
  std::string inside;  // path inside the new root
  bool is_dir;
  bool writable;
  bool device;  // keep device semantics (/dev/null, /dev/urandom)
};

absl::Status OpenSource(const std::string& host, const std::string& inside,
                        bool writable, bool device, std::vector<Source>& out) {
  base::ScopedFd fd(::open(host.c_str(), O_PATH | O_CLOEXEC));
  if (!fd.valid()) {
    return absl::NotFoundError(
        absl::StrCat("sandbox: cannot open ", host,
                     " for the VM's root: ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Errno(absl::StrCat("stat ", host));
  out.push_back({std::move(fd), inside, S_ISDIR(st.st_mode), writable, device});
  return absl::OkStatus();
}

// mkdir -p inside the staging root (root-owned, 0755).
absl::Status MakeParents(const std::string& path) {
  for (size_t pos = path.find('/', 1); pos != std::string::npos;
       pos = path.find('/', pos + 1)) {
    std::string dir = path.substr(0, pos);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return Errno(absl::StrCat("mkdir ", dir));
    }
  }
  return absl::OkStatus();
}

absl::Status BindInto(const std::string& root, const Source& src) {
  std::string target = root + src.inside;
  if (absl::Status s = MakeParents(target); !s.ok()) return s;
  if (src.is_dir) {
    if (::mkdir(target.c_str(), 0755) != 0 && errno != EEXIST) {
      return Errno(absl::StrCat("mkdir ", target));
    }
  } else {
    int fd = ::open(target.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) return Errno(absl::StrCat("create ", target));
    ::close(fd);
  }
  std::string from = absl::StrCat("/proc/self/fd/", src.fd.get());
  if (::mount(from.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return Errno(absl::StrCat("bind ", src.inside));
  }
  // A bind mount ignores flags on creation; they apply on a remount.
  unsigned long flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NOEXEC;
  if (!src.device) flags |= MS_NODEV;
  if (!src.writable) flags |= MS_RDONLY;
  if (::mount(nullptr, target.c_str(), nullptr, flags, nullptr) != 0) {
    return Errno(absl::StrCat("remount ", src.inside));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status BuildMinimalRoot(const SandboxSpec& spec) {
  // Our mounts must never propagate back to the host's namespace.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return Errno("make / private (is this a new mount namespace?)");
  }
  std::vector<Source> sources;
  for (const VmFile& file : spec.files) {
    if (absl::Status s = OpenSource(file.host_path, file.inside_path,
                                    file.writable, false, sources);
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s =
          OpenSource(spec.runtime_dir, kInsideRuntimeDir, true, false, sources);
      !s.ok()) {
    return s;
  }
  for (const char* dev : {"/dev/null", "/dev/urandom"}) {
    if (absl::Status s = OpenSource(dev, dev, true, true, sources); !s.ok()) {
      return s;
    }
  }

  // Stage on the runtime dir: it exists, belongs to this VM, and covering it
  // only affects this private namespace (its O_PATH fd still reaches it).
  const std::string root = spec.runtime_dir;
  if (::mount("hvstack-root", root.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
              "size=1m,nr_inodes=64,mode=0755") != 0) {
    return Errno("mount tmpfs root");
  }
  for (const Source& src : sources) {
    if (absl::Status s = BindInto(root, src); !s.ok()) return s;
  }
  // The tmpfs itself becomes read-only: the worker can only write where
  // the spec says (its runtime dir, writable disks).
  if (::mount(nullptr, root.c_str(), nullptr,
              MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) != 0) {
    return Errno("remount root read-only");
  }

  // pivot_root(".", "."): the old root ends up stacked under the new one
  // and is detached right away, so no directory for it is needed.
  if (::chdir(root.c_str()) != 0) return Errno("chdir new root");
  if (::syscall(SYS_pivot_root, ".", ".") != 0) return Errno("pivot_root");
  if (::umount2(".", MNT_DETACH) != 0) return Errno("detach old root");
  if (::chdir("/") != 0) return Errno("chdir /");
  return absl::OkStatus();
}

}  // namespace sandbox
