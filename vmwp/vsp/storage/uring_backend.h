#ifndef HVSTACK_VMWP_VSP_STORAGE_URING_BACKEND_H_
#define HVSTACK_VMWP_VSP_STORAGE_URING_BACKEND_H_

// A raw disk image file served with io_uring (Debian's liburing).
//
// The ring is created before the worker's sandbox locks down and is
// restricted (IORING_REGISTER_RESTRICTIONS) to READV, WRITEV, FSYNC and
// FALLOCATE on the one registered file (IOSQE_FIXED_FILE required), then
// enabled: io_uring operations do not pass through seccomp, so this is what
// keeps the ring from opening, connecting or reading anything else. After
// lock-down only io_uring_enter is allowed (io_uring_setup and
// io_uring_register stay forbidden).
//
// Submission happens on the caller's thread (a VP thread, under a lock);
// buffered I/O that hits the page cache completes during submission and its
// completion runs right away on that thread (Kick reaps); the rest completes
// on io_uring's kernel workers and is reaped by the backend's device thread,
// woken by an eventfd registered with the ring.

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/log_rate_limiter.h"
#include "base/scoped_fd.h"
#include "vmwp/vsp/storage/block_backend.h"

namespace vsp::storage {

class UringFileBackend final : public BlockBackend {
 public:
  struct Options {
    std::string name;  // for logs and errors
    uint64_t size_bytes = 0;
    bool read_only = false;
    // Submission queue entries (the completion queue gets 16 times as many;
    // more in flight is fine: the kernel keeps overflowing completions and
    // Reap moves them over).
    uint32_t queue_depth = 256;
  };

  // Takes ownership of `fd` (the open image). Fails if io_uring cannot be
  // set up (kernel without it, io_uring_disabled) or the file is smaller
  // than `size_bytes`.
  static absl::StatusOr<std::unique_ptr<UringFileBackend>> Create(
      base::ScopedFd fd, Options options);
  ~UringFileBackend() override;

  uint64_t size_bytes() const override { return options_.size_bytes; }
  bool read_only() const override { return options_.read_only; }
  bool can_unmap() const override { return can_punch_holes_; }
  bool unmap_zeroes() const override { return can_punch_holes_; }
  const std::string& name() const override { return options_.name; }

  void Read(std::span<const iovec> iov, uint64_t offset, IoDone done) override;
  void Write(std::span<const iovec> iov, uint64_t offset, bool fua,
             IoDone done) override;
  void Flush(IoDone done) override;
  void Unmap(uint64_t offset, uint64_t length, IoDone done) override;
  void Kick() override;
  absl::Status Start(std::function<absl::Status()> on_thread_start) override;
  void Stop() override;

  uint64_t in_flight() const { return in_flight_.load(); }

 private:
  struct Request;
  UringFileBackend(base::ScopedFd fd, base::ScopedFd event, Options options);
  absl::Status SetUp();
  // Hands the prepared entries to the kernel; what the kernel returned.
  int Submit() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sq_mu_);
  // Takes a submission entry, submitting what is prepared if the SQ is
  // full; null (with *error = -errno) if the SQ stays full because the
  // submission failed: the caller then fails its request.
  io_uring_sqe* GetSqe(int* error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(sq_mu_);
  Request* NewRequest() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sq_mu_);
  void Queue(io_uring_sqe* sqe, IoDone done, uint64_t expect)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(sq_mu_);
  // Runs the callbacks of every completion waiting in the CQ.
  void Reap();
  void ThreadLoop(std::function<absl::Status()> on_thread_start);

  base::ScopedFd fd_;
  base::ScopedFd event_;  // signalled by the ring on every completion
  const Options options_;
  bool can_punch_holes_ = false;

  io_uring ring_;
  bool ring_ready_ = false;
  absl::Mutex sq_mu_;
  // Every Request made, and the free ones.
  std::vector<std::unique_ptr<Request>> requests_ ABSL_GUARDED_BY(sq_mu_);
  Request* free_ ABSL_GUARDED_BY(sq_mu_) = nullptr;
  base::LogRateLimiter submit_errors_log_{"io_uring submission errors"};
  absl::Mutex cq_mu_ ABSL_ACQUIRED_AFTER(sq_mu_);
  std::atomic<uint64_t> in_flight_{0};
  std::atomic<bool> stopping_{false};
  // A submission failed: the thread submits again.
  std::atomic<bool> retry_submit_{false};
  std::thread thread_;
};

}  // namespace vsp::storage

#endif  // HVSTACK_VMWP_VSP_STORAGE_URING_BACKEND_H_
