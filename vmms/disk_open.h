#ifndef HVSTACK_VMMS_DISK_OPEN_H_
#define HVSTACK_VMMS_DISK_OPEN_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/scoped_fd.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "proto/hvstack/v1/vm.pb.h"

namespace vmms {

// Disk i of a VM is inherited by its worker at this descriptor number + i
// (WorkerDisk.fd); NICs use 40..47 (issue 12).
inline constexpr int kWorkerFirstDiskFd = 100;

// Which VM holds which image open, in vmms's memory: the OFD lock says that
// an image is taken, this says by whom. Filled at each start, emptied when
// the worker is reaped, rebuilt from the database for the workers a
// restarted vmms takes over. Thread-safe.
class DiskHolders {
 public:
  struct Holder {
    std::string vm_name;
    bool writable = false;
  };
  // Images are keyed by (st_dev, st_ino): any path to the same file.
  using ImageId = std::pair<dev_t, ino_t>;

  void Register(const std::string& vm_uuid, const std::string& vm_name,
                const std::vector<std::pair<ImageId, bool>>& images);
  void Release(const std::string& vm_uuid);
  std::optional<Holder> HolderOf(ImageId image, const std::string& except_uuid);

 private:
  absl::Mutex mu_;
  // vm uuid -> (vm name, its images and whether writable).
  struct Entry {
    std::string vm_name;
    std::vector<std::pair<ImageId, bool>> images;
  };
  std::map<std::string, Entry> by_vm_ ABSL_GUARDED_BY(mu_);
};

// Hands a worker its connection to a qemu-nbd when the worker asks for it
// (WorkerDisk.BACKEND_NBD): qemu-nbd drops a client that has not finished
// the NBD handshake within 10 s of connecting (CVE-2024-7409's fix, in
// Debian's QEMU 7.2 too, with no option to change it), and a worker can take
// longer than that from vmms's start of the disk to its storage set-up
// (seconds at load, tens of seconds under nested emulation). So vmms hands
// the worker one end of a socket pair instead; the worker sends one byte when
// it is ready to negotiate, and this thread connects to qemu-nbd's socket and
// sends the connected socket back (SCM_RIGHTS), once. Then, or when the
// worker's end closes, or at destruction, it stops and unlinks the socket.
class NbdConnector {
 public:
  // `vmms_end`: our end of the pair; `socket_path`: qemu-nbd's listening
  // socket; `what`: the disk, for logs.
  static absl::StatusOr<std::unique_ptr<NbdConnector>> Start(
      base::ScopedFd vmms_end, std::string socket_path, std::string what);
  ~NbdConnector();
  NbdConnector(const NbdConnector&) = delete;
  NbdConnector& operator=(const NbdConnector&) = delete;

 private:
  NbdConnector(base::ScopedFd vmms_end, base::ScopedFd stop,
               std::string socket_path, std::string what);
  void Run();

  base::ScopedFd end_;
  base::ScopedFd stop_;  // eventfd: the destructor's signal.
  std::string socket_path_;
  std::string what_;
  std::thread thread_;
};

// One disk of a starting VM: what the worker is told, the descriptor vmms
// hands over at WorkerDisk.fd (the raw image, or the worker's end of the
// NBD connector's socket pair), and for a qcow2/VHDX image the qemu-nbd
// serving it (our child; it exits by itself once the worker's negotiated
// connection closes) and its connector.
struct StartedDisk {
  hvstack::internal::WorkerDisk worker;
  base::ScopedFd handover;
  pid_t nbd_pid = 0;
  std::unique_ptr<NbdConnector> nbd_connector;
  DiskHolders::ImageId image{};
};

// Opens every disk of `vm` for a start, in order: raw images O_RDWR (O_RDONLY
// when read-only) with an OFD lock on the whole file (write lock; read lock
// for read-only disks, which VMs may share), size from fstat; qcow2/VHDX
// images through one confined qemu-nbd each (socket activation on a socket in
// `runtime_dir`, its stderr in `runtime_dir`/nbd-<lun>.log; checked with a
// probe connection that reads its greeting and aborts the handshake, which
// qemu-nbd survives; the worker's connection comes later, see NbdConnector),
// after vmms took its own OFD lock on the image's byte 0 (held by qemu-nbd's
// copy of the descriptor, so it lasts exactly as long as qemu-nbd), size from
// `qemu-img info`. FAILED_PRECONDITION naming the disk and, for a lock
// conflict, the VM that holds the image ("in use by VM 'web1'"). On error
// nothing stays open and every qemu-nbd started is reaped.
absl::StatusOr<std::vector<StartedDisk>> StartDisks(
    const hvstack::v1::Vm& vm, const std::string& runtime_dir,
    DiskHolders& holders);

// After the worker ended: asks its qemu-nbd processes to exit (SIGTERM: they
// flush and exit; they also exit by themselves once the worker's negotiated
// connection closed, but not if the worker never connected), SIGKILLs those
// still there after `grace`, and reaps them.
void ReapNbdServers(const std::vector<pid_t>& pids, absl::Duration grace);

// After the worker ended: waits until no open file description holds a lock
// on any of `paths` (its writable images), polling F_OFD_GETLK, at most
// `limit` in all. A reaped worker's descriptors are not all closed yet: the
// files registered with its io_uring (raw images) are released by the
// kernel's deferred ring teardown, ~15-25 ms after the exit on this host and
// far later under nested emulation, and the whole-file lock goes with them;
// a restore right after a save (a checkpoint of a running VM) failed on it.
// Returns the images still locked at the limit (for a log line; a start then
// names the holder). Images that cannot be opened are skipped.
std::vector<std::string> AwaitImagesUnlocked(
    const std::vector<std::string>& paths, absl::Duration limit);
// The paths of `vm`'s writable disks, for AwaitImagesUnlocked.
std::vector<std::string> WritableImagePaths(const hvstack::v1::Vm& vm);

}  // namespace vmms

#endif  // HVSTACK_VMMS_DISK_OPEN_H_
