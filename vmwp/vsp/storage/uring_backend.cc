#include "vmwp/vsp/storage/uring_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "spdlog/spdlog.h"

namespace vsp::storage {

// One I/O in the ring. Pooled (free_): an I/O allocates nothing once the
// pool has grown to the most ever in flight. The caller's iovecs are used
// as they are (they stay valid until `done` runs).
struct UringFileBackend::Request {
  IoDone done;
  uint64_t expect = 0;      // bytes a read/write must move
  Request* next = nullptr;  // in free_
};

namespace {

absl::Status Errno(int err, const std::string& what) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(what, ": ", strerror(err)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<UringFileBackend>> UringFileBackend::Create(
    base::ScopedFd fd, Options options) {
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return Errno(errno, absl::StrCat("disk ", options.name, ": fstat"));
  }
  if (S_ISREG(st.st_mode) &&
      static_cast<uint64_t>(st.st_size) < options.size_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "disk ", options.name, ": the file has ", st.st_size,
        " bytes, less than the configured size ", options.size_bytes));
  }
  base::ScopedFd event(::eventfd(0, EFD_CLOEXEC));
  if (event.get() < 0) {
    return Errno(errno, absl::StrCat("disk ", options.name, ": eventfd"));
  }
  std::unique_ptr<UringFileBackend> b(new UringFileBackend(
      std::move(fd), std::move(event), std::move(options)));
  if (absl::Status s = b->SetUp(); !s.ok()) return s;
  // Holes: probe past the end of the file, where punching changes nothing.
  if (!b->options_.read_only && S_ISREG(st.st_mode)) {
    const off_t end = (st.st_size + 4095) / 4096 * 4096;
    b->can_punch_holes_ =
        ::fallocate(b->fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    end, 4096) == 0;
  }
  return b;
}

UringFileBackend::UringFileBackend(base::ScopedFd fd, base::ScopedFd event,
                                   Options options)
    : fd_(std::move(fd)),
      event_(std::move(event)),
      options_(std::move(options)) {}

absl::Status UringFileBackend::SetUp() {
  const std::string what = absl::StrCat("disk ", options_.name, ": io_uring");
  io_uring_params p{};
  p.flags = IORING_SETUP_R_DISABLED | IORING_SETUP_CQSIZE;
  // storvsp admits up to 1024 SRBs per channel: room for most of them, and
  // Reap moves the rest over from the kernel's overflow list.
  p.cq_entries = options_.queue_depth * 16;
  if (int r = io_uring_queue_init_params(options_.queue_depth, &ring_, &p);
      r < 0) {
    return Errno(-r, absl::StrCat(what,
                                  " setup (the kernel must allow "
                                  "io_uring: kernel.io_uring_disabled)"));
  }
  ring_ready_ = true;
  // The ring may only read, write, sync and deallocate the registered file.
  io_uring_restriction res[8] = {};
  const uint8_t ops[] = {IORING_OP_READV, IORING_OP_WRITEV,
                         IORING_OP_READ,  IORING_OP_WRITE,
                         IORING_OP_FSYNC, IORING_OP_FALLOCATE};
  int n = 0;
  for (uint8_t op : ops) {
    res[n].opcode = IORING_RESTRICTION_SQE_OP;
    res[n++].sqe_op = op;
  }
  res[n].opcode = IORING_RESTRICTION_SQE_FLAGS_REQUIRED;
  res[n++].sqe_flags = IOSQE_FIXED_FILE;
  res[n].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
  res[n++].sqe_flags = IOSQE_FIXED_FILE;
  if (int r = io_uring_register_restrictions(&ring_, res, n); r < 0) {
    return Errno(-r, absl::StrCat(what, " restrictions"));
  }
  const int fd = fd_.get();
  if (int r = io_uring_register_files(&ring_, &fd, 1); r < 0) {
    return Errno(-r, absl::StrCat(what, " file registration"));
  }
  // Only completions that did not finish during submission wake the thread.
  if (int r = io_uring_register_eventfd_async(&ring_, event_.get()); r < 0) {
    return Errno(-r, absl::StrCat(what, " eventfd registration"));
  }
  if (int r = io_uring_enable_rings(&ring_); r < 0) {
    return Errno(-r, absl::StrCat(what, " enable"));
  }
  return absl::OkStatus();
}

UringFileBackend::~UringFileBackend() {
  Stop();
  if (ring_ready_) io_uring_queue_exit(&ring_);
}

UringFileBackend::Request* UringFileBackend::NewRequest() {
  if (free_ == nullptr) {
    requests_.push_back(std::make_unique<Request>());
    return requests_.back().get();
  }
  return std::exchange(free_, free_->next);
}

int UringFileBackend::Submit() {
  if (io_uring_sq_ready(&ring_) == 0) return 0;
  const int r = io_uring_submit(&ring_);
  if (r < 0) {
    // What was prepared stays in the SQ. A guest waiting for it may send
    // nothing more, so the completion thread tries again (after a pause)
    // rather than the next request's Kick.
    retry_submit_.store(true);
    const uint64_t one = 1;
    (void)!::write(event_.get(), &one, sizeof(one));
    submit_errors_log_.Note([&] {
      spdlog::warn("storage {}: io_uring submission failed: {}", options_.name,
                   strerror(-r));
    });
  }
  return r;
}

io_uring_sqe* UringFileBackend::GetSqe(int* error) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    // The SQ is full of prepared entries: hand them over, then take one.
    const int r = Submit();
    sqe = io_uring_get_sqe(&ring_);
    // Still full: the kernel took none (a failed submission). The caller
    // fails this request; the prepared ones stay for the next Kick.
    if (sqe == nullptr) *error = r < 0 ? r : -EAGAIN;
  }
  return sqe;
}

void UringFileBackend::Queue(io_uring_sqe* sqe, IoDone done, uint64_t expect) {
  Request* r = NewRequest();
  io_uring_sqe_set_data(sqe, r);
  r->done = std::move(done);
  r->expect = expect;
  sqe->flags |= IOSQE_FIXED_FILE;
  in_flight_.fetch_add(1);
}

void UringFileBackend::Read(std::span<const iovec> iov, uint64_t offset,
                            IoDone done) {
  uint64_t bytes = 0;
  for (const iovec& v : iov) bytes += v.iov_len;
  int error = 0;
  {
    absl::MutexLock lock(&sq_mu_);
    if (io_uring_sqe* sqe = GetSqe(&error)) {
      // One buffer (most requests): READ spares the kernel importing an
      // iovec array.
      if (iov.size() == 1) {
        io_uring_prep_read(sqe, 0, iov[0].iov_base, iov[0].iov_len, offset);
      } else {
        io_uring_prep_readv(sqe, 0, iov.data(), iov.size(), offset);
      }
      Queue(sqe, std::move(done), bytes);
      return;
    }
  }
  done(error);
}

void UringFileBackend::Write(std::span<const iovec> iov, uint64_t offset,
                             bool fua, IoDone done) {
  uint64_t bytes = 0;
  for (const iovec& v : iov) bytes += v.iov_len;
  int error = 0;
  {
    absl::MutexLock lock(&sq_mu_);
    if (io_uring_sqe* sqe = GetSqe(&error)) {
      if (iov.size() == 1) {
        io_uring_prep_write(sqe, 0, iov[0].iov_base, iov[0].iov_len, offset);
      } else {
        io_uring_prep_writev(sqe, 0, iov.data(), iov.size(), offset);
      }
      if (fua) sqe->rw_flags = RWF_DSYNC;
      Queue(sqe, std::move(done), bytes);
      return;
    }
  }
  done(error);
}

void UringFileBackend::Flush(IoDone done) {
  int error = 0;
  {
    absl::MutexLock lock(&sq_mu_);
    if (io_uring_sqe* sqe = GetSqe(&error)) {
      io_uring_prep_fsync(sqe, 0, IORING_FSYNC_DATASYNC);
      Queue(sqe, std::move(done), 0);
      return;
    }
  }
  done(error);
}

void UringFileBackend::Unmap(uint64_t offset, uint64_t length, IoDone done) {
  if (!can_punch_holes_) {
    done(-EOPNOTSUPP);
    return;
  }
  int error = 0;
  {
    absl::MutexLock lock(&sq_mu_);
    if (io_uring_sqe* sqe = GetSqe(&error)) {
      io_uring_prep_fallocate(
          sqe, 0, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
      Queue(sqe, std::move(done), 0);
      return;
    }
  }
  done(error);
}

void UringFileBackend::Kick() {
  {
    absl::MutexLock lock(&sq_mu_);
    Submit();
  }
  Reap();
}

void UringFileBackend::Reap() {
  // Completions beyond the CQ's size wait in the kernel's overflow list
  // until an io_uring_enter with GETEVENTS moves them over; nothing else
  // would (a guest waiting for them submits nothing more), so move them
  // now.
  if (io_uring_cq_has_overflow(&ring_)) (void)io_uring_get_events(&ring_);
  // Nothing completed (a drain that queued nothing, or I/O still running):
  // no lock. Completions posted during our own submission are visible here.
  if (io_uring_cq_ready(&ring_) == 0) return;
  absl::InlinedVector<std::pair<Request*, int>, 64> done;
  {
    absl::MutexLock lock(&cq_mu_);
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      done.emplace_back(static_cast<Request*>(io_uring_cqe_get_data(cqe)),
                        cqe->res);
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
  }
  // The CQ was full: more may have waited in the overflow list.
  const bool more = io_uring_cq_has_overflow(&ring_);
  for (auto& [r, res] : done) {
    int64_t result = res;
    // A short read or write means the file ended or the disk filled up.
    if (res >= 0 && static_cast<uint64_t>(res) != r->expect) result = -EIO;
    r->done(result);
    r->done = nullptr;
    in_flight_.fetch_sub(1);
  }
  {
    // Back to the pool, all at once.
    absl::MutexLock lock(&sq_mu_);
    for (auto& [r, res] : done) r->next = std::exchange(free_, r);
  }
  if (more) Reap();
}

absl::Status UringFileBackend::Start(
    std::function<absl::Status()> on_thread_start) {
  if (thread_.joinable()) return absl::OkStatus();
  thread_ =
      std::thread([this, f = std::move(on_thread_start)] { ThreadLoop(f); });
  return absl::OkStatus();
}

void UringFileBackend::ThreadLoop(
    std::function<absl::Status()> on_thread_start) {
  if (on_thread_start) {
    if (absl::Status s = on_thread_start(); !s.ok()) {
      // No unconfined thread: completions are then only reaped by Kick and
      // Stop, which is slow but correct.
      spdlog::error("storage {}: completion thread not started: {}",
                    options_.name, s.ToString());
      return;
    }
  }
  for (;;) {
    uint64_t n;
    if (::read(event_.get(), &n, sizeof(n)) < 0 && errno != EINTR) {
      spdlog::error("storage {}: eventfd read: {}", options_.name,
                    strerror(errno));
      return;
    }
    if (stopping_.load() && in_flight_.load() == 0) return;
    if (retry_submit_.exchange(false)) {
      // A refused submission: not in a tight loop while the kernel keeps
      // refusing (each failure wakes this thread again).
      absl::SleepFor(absl::Milliseconds(1));
      Kick();
      continue;
    }
    Reap();
  }
}

void UringFileBackend::Stop() {
  if (!ring_ready_) return;
  stopping_.store(true);
  Kick();
  while (in_flight_.load() > 0) {
    absl::SleepFor(absl::Milliseconds(1));
    Kick();  // submits what a failed submission left, then reaps
  }
  if (thread_.joinable()) {
    const uint64_t one = 1;
    (void)!::write(event_.get(), &one, sizeof(one));
    thread_.join();
  }
}

}  // namespace vsp::storage
