#ifndef HVSTACK_VMWP_VSP_STORAGE_BLOCK_BACKEND_H_
#define HVSTACK_VMWP_VSP_STORAGE_BLOCK_BACKEND_H_

// Where a disk's blocks live: a raw file (UringFileBackend) or an NBD export
// (NbdBackend). Calls queue I/O and return at once; nothing here blocks the
// caller (a VP thread draining a VMBus channel) on the disk. Completions run
// on the backend's device thread, or on the submitting thread when the I/O
// finished during submission (page-cache hits).

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"

namespace vsp::storage {

// Bytes moved (reads/writes) or 0 (flush/unmap) on success, -errno on
// failure. Runs exactly once.
using IoDone = absl::AnyInvocable<void(int64_t result)>;

class BlockBackend {
 public:
  virtual ~BlockBackend() = default;

  virtual uint64_t size_bytes() const = 0;
  virtual bool read_only() const = 0;
  // Unmap deallocates (punches a hole / NBD trim).
  virtual bool can_unmap() const = 0;
  // Deallocated ranges read back as zeros.
  virtual bool unmap_zeroes() const = 0;
  // For logs and errors: the host path or export.
  virtual const std::string& name() const = 0;

  // The iovecs must stay valid until `done` runs. Writes with `fua` reach
  // stable storage before they complete.
  virtual void Read(std::span<const iovec> iov, uint64_t offset,
                    IoDone done) = 0;
  virtual void Write(std::span<const iovec> iov, uint64_t offset, bool fua,
                     IoDone done) = 0;
  // Completes once every write completed before it is on stable storage
  // (fdatasync / NBD_CMD_FLUSH).
  virtual void Flush(IoDone done) = 0;
  virtual void Unmap(uint64_t offset, uint64_t length, IoDone done) = 0;
  // Hands what the calls above queued to the kernel or the server, in one
  // batch; the submitter calls it once per burst (a channel drain).
  virtual void Kick() = 0;

  // Starts the completion thread, which runs `on_thread_start` first (the
  // sandbox's device-thread filter). Call after the process lock-down.
  virtual absl::Status Start(std::function<absl::Status()> on_thread_start) = 0;
  // Completes everything in flight (callbacks run), then stops the thread.
  // Idempotent; the destructor calls it.
  virtual void Stop() = 0;
};

}  // namespace vsp::storage

#endif  // HVSTACK_VMWP_VSP_STORAGE_BLOCK_BACKEND_H_
