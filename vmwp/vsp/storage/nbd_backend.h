#ifndef HVSTACK_VMWP_VSP_STORAGE_NBD_BACKEND_H_
#define HVSTACK_VMWP_VSP_STORAGE_NBD_BACKEND_H_

// A disk served over NBD (qcow2, VHDX, ... by a qemu-nbd or
// qemu-storage-daemon that vmms runs), through Debian's libnbd on the
// connected socket vmms handed over (nbd_connect_socket: the newstyle
// handshake runs at Create, before the sandbox locks down).
//
// Every libnbd call after Create happens on the backend's own device thread:
// VP threads only queue commands and poke an eventfd (a vCPU thread may not
// touch sockets under the sandbox). The thread polls the socket in the
// direction libnbd asks for, issues queued commands (nbd_aio_*), and runs
// completions. Scattered guest buffers go through one bounce buffer per
// command (libnbd reads and writes contiguous buffers). FLUSH is
// NBD_CMD_FLUSH; FUA is NBD_CMD_FLAG_FUA, or a write followed by a flush
// when the server lacks it; UNMAP is NBD_CMD_TRIM when the server can trim.

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/scoped_fd.h"
#include "vmwp/vsp/storage/block_backend.h"

struct nbd_handle;

namespace vsp::storage {

class NbdBackend final : public BlockBackend {
 public:
  struct Options {
    std::string name;         // for logs and errors
    std::string export_name;  // the server's export
    uint64_t size_bytes = 0;  // what the guest sees (<= the export's size)
    bool read_only = false;
  };

  // Takes ownership of `socket` (connected, handshake not done) and runs the
  // handshake. Fails naming the disk if the server refuses, the export is
  // smaller than `size_bytes`, or is read-only for a writable disk.
  static absl::StatusOr<std::unique_ptr<NbdBackend>> Create(
      base::ScopedFd socket, Options options);
  ~NbdBackend() override;

  uint64_t size_bytes() const override { return options_.size_bytes; }
  bool read_only() const override { return options_.read_only; }
  bool can_unmap() const override { return can_trim_ && !options_.read_only; }
  bool unmap_zeroes() const override { return false; }
  const std::string& name() const override { return options_.name; }

  void Read(std::span<const iovec> iov, uint64_t offset, IoDone done) override;
  void Write(std::span<const iovec> iov, uint64_t offset, bool fua,
             IoDone done) override;
  void Flush(IoDone done) override;
  void Unmap(uint64_t offset, uint64_t length, IoDone done) override;
  void Kick() override;
  absl::Status Start(std::function<absl::Status()> on_thread_start) override;
  void Stop() override;

 private:
  struct Command;
  NbdBackend(nbd_handle* h, base::ScopedFd event, Options options);
  void Enqueue(std::unique_ptr<Command> c);
  // Thread only.
  void ThreadLoop(std::function<absl::Status()> on_thread_start);
  void Issue(std::unique_ptr<Command> c);
  static int OnComplete(void* user_data, int* error);
  void Finish(Command* c, int64_t result);

  nbd_handle* h_;
  base::ScopedFd event_;
  const Options options_;
  bool can_flush_ = false;
  bool can_fua_ = false;
  bool can_trim_ = false;

  absl::Mutex mu_;
  std::deque<std::unique_ptr<Command>> queue_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> in_flight_{0};  // queued + issued
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace vsp::storage

#endif  // HVSTACK_VMWP_VSP_STORAGE_NBD_BACKEND_H_
