#include "vmms/disk_open.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "base/fd_passing.h"
#include "spdlog/spdlog.h"
#include "vmms/disk_image.h"
#include "vmms/disk_table.h"
#include "vmms/qemu_process.h"

namespace vmms {
namespace {

using hvstack::internal::WorkerDisk;
using hvstack::v1::Disk;
using hvstack::v1::Vm;

// The NBD export name qemu-nbd serves each image under.
constexpr char kNbdExportName[] = "disk";
// How long qemu-nbd gets to open its image and greet.
constexpr absl::Duration kNbdGreetingTimeout = absl::Seconds(30);

std::string DiskName(const Disk& disk) {
  return absl::StrCat("disk ", ScsiAddressText(disk.address()), " ",
                      disk.path());
}

absl::Status Failed(const Vm& vm, const Disk& disk, absl::string_view why) {
  return absl::FailedPreconditionError(absl::StrCat(
      "VM '", vm.name(), "' cannot start: ", DiskName(disk), " ", why));
}

// How long a lock that no VM of ours holds may take to go away. A worker
// that just ended (a guest reboot, a crash before a restart) holds its raw
// images through its io_uring's registered files until the kernel tears the
// ring down, asynchronously, after the process is gone: measured 20-50 ms
// (Linux 6.1 and 6.18). Likewise a qemu-nbd whose worker connection just
// closed is still exiting.
constexpr absl::Duration kEndingHolderGrace = absl::Milliseconds(500);

// Takes the OFD lock (whole file, or byte 0 only for images qemu-nbd also
// locks: QEMU's own lock bytes start at 100). A conflict names its holder.
absl::Status Lock(const Vm& vm, const Disk& disk, int fd,
                  DiskHolders::ImageId id, bool whole_file,
                  DiskHolders& holders) {
  struct flock fl = {};
  fl.l_type = disk.read_only() ? F_RDLCK : F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = whole_file ? 0 : 1;
  const absl::Time give_up = absl::Now() + kEndingHolderGrace;
  int err;
  for (;;) {
    if (::fcntl(fd, F_OFD_SETLK, &fl) == 0) return absl::OkStatus();
    err = errno;
    if ((err != EAGAIN && err != EACCES) || absl::Now() >= give_up ||
        holders.HolderOf(id, vm.uuid()).has_value()) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (err != EAGAIN && err != EACCES)
    return Failed(vm, disk,
                  absl::StrCat("cannot be locked: ", std::strerror(err)));
  if (std::optional<DiskHolders::Holder> holder =
          holders.HolderOf(id, vm.uuid())) {
    return Failed(
        vm, disk,
        absl::StrCat("is in use by VM '", holder->vm_name, "' (",
                     holder->writable ? "writable" : "read-only",
                     "): a writable disk belongs to one running VM; stop '",
                     holder->vm_name, "' first",
                     disk.read_only() || !holder->writable
                         ? ""
                         : ", or attach the disk read-only to both"));
  }
  return Failed(vm, disk,
                "is locked by another process (not a VM of this vmms); "
                "find it with lslocks");
}

WorkerDisk Describe(const Disk& disk, int index, uint64_t size) {
  WorkerDisk w;
  w.set_controller(disk.address().controller());
  w.set_target(disk.address().target());
  w.set_lun(disk.address().lun());
  w.set_fd(kWorkerFirstDiskFd + index);
  w.set_read_only(disk.read_only());
  w.set_size_bytes(size);
  w.set_logical_block_size(kDiskSectorBytes);
  w.set_display_name(disk.path());
  w.set_serial(disk.serial());
  return w;
}

absl::StatusOr<StartedDisk> OpenRaw(const Vm& vm, const Disk& disk, int index,
                                    DiskHolders& holders) {
  base::ScopedFd fd(::open(disk.path().c_str(),
                           (disk.read_only() ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (!fd) {
    return Failed(vm, disk,
                  absl::StrCat("cannot be opened ",
                               disk.read_only() ? "for reading" : "for writing",
                               ": ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0)
    return Failed(vm, disk, absl::StrCat("fstat: ", std::strerror(errno)));
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode)) {
    if (::ioctl(fd.get(), BLKGETSIZE64, &size) != 0)
      return Failed(vm, disk,
                    absl::StrCat("has no size: ", std::strerror(errno)));
  } else if (!S_ISREG(st.st_mode)) {
    return Failed(vm, disk, "is not a regular file or a block device any more");
  }
  if (size == 0 || size % kDiskSectorBytes != 0) {
    return Failed(
        vm, disk,
        absl::StrCat("is ", size, " bytes, not a non-zero multiple of ",
                     kDiskSectorBytes));
  }
  DiskHolders::ImageId id{st.st_dev, st.st_ino};
  if (absl::Status s = Lock(vm, disk, fd.get(), id, true, holders); !s.ok())
    return s;
  StartedDisk started;
  started.worker = Describe(disk, index, size);
  started.worker.set_backend(WorkerDisk::BACKEND_RAW_FILE);
  started.handover = std::move(fd);
  started.image = id;
  return started;
}

// The first line of qemu-nbd's log, for an error message.
std::string FirstLogLine(const std::string& path) {
  base::ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  char buf[512];
  const ssize_t n = fd ? ::read(fd.get(), buf, sizeof(buf)) : -1;
  if (n <= 0) return "no message";
  std::string text(buf, static_cast<size_t>(n));
  return std::string(absl::StripAsciiWhitespace(
      std::vector<std::string>(absl::StrSplit(text, '\n')).front()));
}

absl::StatusOr<StartedDisk> StartNbd(const Vm& vm, const Disk& disk, int index,
                                     const std::string& runtime_dir,
                                     DiskHolders& holders) {
  const std::string format = DiskFormatName(disk.format());
  // The image is read as its recorded format, never probed.
  absl::StatusOr<ImageInfo> info = ProbeImage(disk.path(), format);
  if (!info.ok()) return Failed(vm, disk, info.status().message());
  if (info->virtual_size == 0 || info->virtual_size % kDiskSectorBytes != 0) {
    return Failed(vm, disk,
                  absl::StrCat("has a virtual size of ", info->virtual_size,
                               " bytes, not a non-zero multiple of 512"));
  }
  absl::StatusOr<std::string> qemu_nbd = LocateQemuTool("qemu-nbd");
  if (!qemu_nbd.ok()) return qemu_nbd.status();
  // vmms's own lock, whose holder it can name. F_WRLCK needs a descriptor
  // open for writing.
  base::ScopedFd lock_fd(::open(
      disk.path().c_str(), (disk.read_only() ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (!lock_fd) {
    return Failed(vm, disk,
                  absl::StrCat("cannot be opened: ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(lock_fd.get(), &st) != 0)
    return Failed(vm, disk, absl::StrCat("fstat: ", std::strerror(errno)));
  DiskHolders::ImageId id{st.st_dev, st.st_ino};
  if (absl::Status s = Lock(vm, disk, lock_fd.get(), id, false, holders);
      !s.ok()) {
    return s;
  }

  const std::string lun = absl::StrCat(disk.address().lun());
  const std::string socket_path =
      absl::StrCat(runtime_dir, "/nbd-", lun, ".sock");
  const std::string log_path = absl::StrCat(runtime_dir, "/nbd-", lun, ".log");
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return Failed(vm, disk,
                  absl::StrCat("cannot be served: socket path ", socket_path,
                               " is too long"));
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  ::unlink(socket_path.c_str());
  base::ScopedFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener ||
      ::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr),
             sizeof(addr)) != 0 ||
      ::listen(listener.get(), 1) != 0) {
    return Failed(vm, disk,
                  absl::StrCat("cannot be served: socket ", socket_path, ": ",
                               std::strerror(errno)));
  }
  base::ScopedFd log(
      ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!log) {
    ::unlink(socket_path.c_str());
    return Failed(
        vm, disk,
        absl::StrCat("cannot create ", log_path, ": ", std::strerror(errno)));
  }
  ToolSpawn spawn;
  spawn.argv = {*qemu_nbd,       "--format",        format,
                "--export-name", kNbdExportName,    "--cache=writeback",
                "--aio=threads", "--discard=unmap", "--detect-zeroes=off"};
  if (disk.read_only()) spawn.argv.push_back("--read-only");
  spawn.argv.push_back("--");
  spawn.argv.push_back(disk.path());
  spawn.env = {"LISTEN_FDS=1", "PATH=/usr/bin:/bin", "LC_ALL=C"};
  spawn.fds = {{log.get(), STDOUT_FILENO},
               {log.get(), STDERR_FILENO},
               {listener.get(), 3},
               {lock_fd.get(), 4}};
  spawn.socket_activation = true;
  spawn.new_namespaces = true;
  absl::StatusOr<pid_t> pid = SpawnConfinedTool(spawn);
  if (!pid.ok()) {
    ::unlink(socket_path.c_str());
    return Failed(vm, disk,
                  absl::StrCat("cannot be served: ", pid.status().message()));
  }
  // Connecting to a listening socket completes at once (the backlog).
  listener.reset();
  base::ScopedFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const bool connected =
      probe && ::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr),
                         sizeof(addr)) == 0;
  const int connect_errno = errno;
  auto give_up = [&](absl::string_view why) {
    probe.reset();
    ::unlink(socket_path.c_str());
    ReapNbdServers({*pid}, absl::Seconds(2));
    return Failed(vm, disk, why);
  };
  if (!connected) {
    return give_up(absl::StrCat("cannot be served: connect: ",
                                std::strerror(connect_errno)));
  }
  // qemu-nbd greets once it has opened the image: wait for the greeting (or
  // see it exit), then end this probe with NBD_OPT_ABORT. qemu-nbd stays up
  // for the worker's connection (it only exits after a client that finished
  // the handshake goes), and logs nothing for an abort.
  pollfd p = {probe.get(), POLLIN, 0};
  int ready;
  do {
    ready = ::poll(
        &p, 1,
        static_cast<int>(absl::ToInt64Milliseconds(kNbdGreetingTimeout)));
  } while (ready < 0 && errno == EINTR);
  char greeting[18];
  const ssize_t got =
      ready == 1 ? ::recv(probe.get(), greeting, sizeof(greeting), MSG_WAITALL)
                 : -1;
  if (got != static_cast<ssize_t>(sizeof(greeting)) ||
      std::memcmp(greeting, "NBDMAGICIHAVEOPT", 16) != 0) {
    return give_up(absl::StrCat(
        "cannot be served by qemu-nbd: ",
        ready == 0 ? "no greeting within 30s" : FirstLogLine(log_path),
        " (log: ", log_path, ")"));
  }
  // Client flags NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES, then the
  // option header of NBD_OPT_ABORT (2) with no data (big-endian).
  static constexpr unsigned char kAbort[] = {0,   0,   0,   3,   'I', 'H', 'A',
                                             'V', 'E', 'O', 'P', 'T', 0,   0,
                                             0,   2,   0,   0,   0,   0};
  (void)::send(probe.get(), kAbort, sizeof(kAbort), MSG_NOSIGNAL);
  probe.reset();
  // The worker asks for its connection when it is ready to negotiate.
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return give_up(
        absl::StrCat("cannot be served: socketpair: ", std::strerror(errno)));
  }
  base::ScopedFd worker_end(pair[0]);
  absl::StatusOr<std::unique_ptr<NbdConnector>> connector =
      NbdConnector::Start(base::ScopedFd(pair[1]), socket_path, DiskName(disk));
  if (!connector.ok()) {
    worker_end.reset();
    return give_up(
        absl::StrCat("cannot be served: ", connector.status().message()));
  }
  StartedDisk started;
  started.worker = Describe(disk, index, info->virtual_size);
  started.worker.set_backend(WorkerDisk::BACKEND_NBD);
  started.worker.set_nbd_export_name(kNbdExportName);
  started.handover = std::move(worker_end);
  started.nbd_pid = *pid;
  started.nbd_connector = *std::move(connector);
  started.image = id;
  return started;
}

}  // namespace

absl::StatusOr<std::unique_ptr<NbdConnector>> NbdConnector::Start(
    base::ScopedFd vmms_end, std::string socket_path, std::string what) {
  base::ScopedFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop)
    return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
  std::unique_ptr<NbdConnector> c(
      new NbdConnector(std::move(vmms_end), std::move(stop),
                       std::move(socket_path), std::move(what)));
  c->thread_ = std::thread([raw = c.get()] { raw->Run(); });
  return c;
}

NbdConnector::NbdConnector(base::ScopedFd vmms_end, base::ScopedFd stop,
                           std::string socket_path, std::string what)
    : end_(std::move(vmms_end)),
      stop_(std::move(stop)),
      socket_path_(std::move(socket_path)),
      what_(std::move(what)) {}

NbdConnector::~NbdConnector() {
  const uint64_t one = 1;
  (void)::write(stop_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  ::unlink(socket_path_.c_str());
}

void NbdConnector::Run() {
  pollfd fds[2] = {{end_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
  while (true) {
    const int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || (fds[1].revents & POLLIN) != 0) return;
    if (fds[0].revents != 0) break;
  }
  // One byte asks; anything else (the worker's end closed) ends it.
  char ask = 0;
  if (::recv(end_.get(), &ask, 1, MSG_DONTWAIT) != 1) {
    ::unlink(socket_path_.c_str());
    return;
  }
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path_.c_str(),
              std::min(socket_path_.size() + 1, sizeof(addr.sun_path)));
  base::ScopedFd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  std::string error;
  if (!client || ::connect(client.get(), reinterpret_cast<sockaddr*>(&addr),
                           sizeof(addr)) != 0) {
    error = absl::StrCat("vmms cannot connect to qemu-nbd's socket ",
                         socket_path_, ": ", std::strerror(errno));
    spdlog::warn("{}: {}", what_, error);
  }
  // Nobody else may connect from here on.
  ::unlink(socket_path_.c_str());
  absl::Status sent = error.empty()
                          ? base::SendWithFds(end_.get(), "c", {client.get()})
                          : base::SendWithFds(end_.get(), error, {});
  if (!sent.ok()) spdlog::warn("{}: {}", what_, sent.ToString());
  end_.reset();
}

void DiskHolders::Register(
    const std::string& vm_uuid, const std::string& vm_name,
    const std::vector<std::pair<ImageId, bool>>& images) {
  absl::MutexLock lock(&mu_);
  by_vm_[vm_uuid] = Entry{vm_name, images};
}

void DiskHolders::Release(const std::string& vm_uuid) {
  absl::MutexLock lock(&mu_);
  by_vm_.erase(vm_uuid);
}

std::optional<DiskHolders::Holder> DiskHolders::HolderOf(
    ImageId image, const std::string& except_uuid) {
  absl::MutexLock lock(&mu_);
  std::optional<Holder> found;
  for (const auto& [uuid, entry] : by_vm_) {
    if (uuid == except_uuid) continue;
    for (const auto& [id, writable] : entry.images) {
      if (id != image) continue;
      // A writer is the one to name.
      if (!found.has_value() || writable)
        found = Holder{entry.vm_name, writable};
    }
  }
  return found;
}

absl::StatusOr<std::vector<StartedDisk>> StartDisks(
    const Vm& vm, const std::string& runtime_dir, DiskHolders& holders) {
  std::vector<StartedDisk> started;
  for (int i = 0; i < vm.config().disks_size(); ++i) {
    const Disk& disk = vm.config().disks(i);
    absl::StatusOr<StartedDisk> one =
        disk.format() == hvstack::v1::DISK_FORMAT_RAW
            ? OpenRaw(vm, disk, i, holders)
            : StartNbd(vm, disk, i, runtime_dir, holders);
    if (!one.ok()) {
      std::vector<pid_t> pids;
      for (const StartedDisk& s : started) {
        if (s.nbd_pid > 0) pids.push_back(s.nbd_pid);
      }
      started.clear();  // Closes the connections: each qemu-nbd exits.
      ReapNbdServers(pids, absl::Seconds(5));
      return one.status();
    }
    started.push_back(*std::move(one));
  }
  return started;
}

std::vector<std::string> AwaitImagesUnlocked(
    const std::vector<std::string>& paths, absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  std::vector<std::string> locked;
  for (const std::string& path : paths) {
    base::ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) continue;
    for (;;) {
      struct flock fl = {};
      fl.l_type = F_WRLCK;  // conflicts with any lock
      fl.l_whence = SEEK_SET;
      if (::fcntl(fd.get(), F_OFD_GETLK, &fl) != 0 || fl.l_type == F_UNLCK)
        break;
      if (absl::Now() >= deadline) {
        locked.push_back(path);
        break;
      }
      absl::SleepFor(absl::Milliseconds(2));
    }
  }
  return locked;
}

std::vector<std::string> WritableImagePaths(const Vm& vm) {
  std::vector<std::string> paths;
  for (const Disk& disk : vm.config().disks()) {
    if (!disk.read_only()) paths.push_back(disk.path());
  }
  return paths;
}

void ReapNbdServers(const std::vector<pid_t>& pids, absl::Duration grace) {
  const absl::Time deadline = absl::Now() + grace;
  // Not yet reaped, so the pids are still theirs.
  for (pid_t pid : pids) ::kill(pid, SIGTERM);
  for (pid_t pid : pids) {
    while (true) {
      const pid_t r = ::waitpid(pid, nullptr, WNOHANG);
      if (r == pid || (r < 0 && errno != EINTR)) break;
      if (r == 0 && absl::Now() >= deadline) {
        ::kill(pid, SIGKILL);
        while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
        break;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
  }
}

}  // namespace vmms
