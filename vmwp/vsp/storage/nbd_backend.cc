#include "vmwp/vsp/storage/nbd_backend.h"

#include <errno.h>
#include <libnbd.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "spdlog/spdlog.h"
#include "vmwp/vsp/storage/iovecs.h"

namespace vsp::storage {

struct NbdBackend::Command {
  enum class Kind { kRead, kWrite, kFlush, kTrim };
  Kind kind = Kind::kRead;
  std::vector<iovec> iov;
  uint64_t offset = 0;
  uint64_t length = 0;
  bool fua = false;
  // A write without server FUA is followed by a flush before it completes.
  bool flush_after = false;
  IoDone done;
  std::vector<uint8_t> bounce;
  NbdBackend* backend = nullptr;
};

namespace {

std::string NbdError() {
  const char* e = nbd_get_error();
  return e != nullptr ? e : "unknown libnbd error";
}

uint64_t Bytes(std::span<const iovec> iov) {
  uint64_t n = 0;
  for (const iovec& v : iov) n += v.iov_len;
  return n;
}

}  // namespace

absl::StatusOr<std::unique_ptr<NbdBackend>> NbdBackend::Create(
    base::ScopedFd socket, Options options) {
  const std::string what = absl::StrCat(
      "disk ", options.name, " (NBD export \"", options.export_name, "\")");
  nbd_handle* h = nbd_create();
  if (h == nullptr) {
    return absl::InternalError(absl::StrCat(what, ": ", NbdError()));
  }
  auto fail = [&](absl::StatusCode code, const std::string& why) {
    nbd_close(h);
    return absl::Status(code, absl::StrCat(what, ": ", why));
  };
  if (nbd_set_export_name(h, options.export_name.c_str()) != 0) {
    return fail(absl::StatusCode::kInvalidArgument, NbdError());
  }
  // libnbd owns the socket from here (nbd_close closes it).
  if (nbd_connect_socket(h, socket.release()) != 0) {
    return fail(absl::StatusCode::kUnavailable,
                absl::StrCat("NBD handshake failed: ", NbdError()));
  }
  const int64_t size = nbd_get_size(h);
  if (size < 0) return fail(absl::StatusCode::kUnavailable, NbdError());
  if (static_cast<uint64_t>(size) < options.size_bytes) {
    return fail(absl::StatusCode::kInvalidArgument,
                absl::StrCat("the export has ", size,
                             " bytes, less than the configured size ",
                             options.size_bytes));
  }
  if (!options.read_only && nbd_is_read_only(h) == 1) {
    return fail(absl::StatusCode::kInvalidArgument,
                "the server exports it read-only, the disk is writable");
  }
  base::ScopedFd event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (event.get() < 0) {
    return fail(absl::StatusCode::kInternal,
                absl::StrCat("eventfd: ", strerror(errno)));
  }
  std::unique_ptr<NbdBackend> b(
      new NbdBackend(h, std::move(event), std::move(options)));
  b->can_flush_ = nbd_can_flush(h) == 1;
  b->can_fua_ = nbd_can_fua(h) == 1;
  b->can_trim_ = nbd_can_trim(h) == 1;
  if (!b->can_flush_) {
    spdlog::warn(
        "storage {}: the NBD server cannot flush; SYNCHRONIZE CACHE does not "
        "reach stable storage",
        b->options_.name);
  }
  return b;
}

NbdBackend::NbdBackend(nbd_handle* h, base::ScopedFd event, Options options)
    : h_(h), event_(std::move(event)), options_(std::move(options)) {}

NbdBackend::~NbdBackend() {
  Stop();
  nbd_close(h_);
}

void NbdBackend::Enqueue(std::unique_ptr<Command> c) {
  c->backend = this;
  in_flight_.fetch_add(1);
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(c));
}

void NbdBackend::Read(std::span<const iovec> iov, uint64_t offset,
                      IoDone done) {
  auto c = std::make_unique<Command>();
  c->kind = Command::Kind::kRead;
  c->iov.assign(iov.begin(), iov.end());
  c->offset = offset;
  c->length = Bytes(iov);
  c->done = std::move(done);
  Enqueue(std::move(c));
}

void NbdBackend::Write(std::span<const iovec> iov, uint64_t offset, bool fua,
                       IoDone done) {
  auto c = std::make_unique<Command>();
  c->kind = Command::Kind::kWrite;
  c->iov.assign(iov.begin(), iov.end());
  c->offset = offset;
  c->length = Bytes(iov);
  c->fua = fua;
  c->done = std::move(done);
  Enqueue(std::move(c));
}

void NbdBackend::Flush(IoDone done) {
  auto c = std::make_unique<Command>();
  c->kind = Command::Kind::kFlush;
  c->done = std::move(done);
  Enqueue(std::move(c));
}

void NbdBackend::Unmap(uint64_t offset, uint64_t length, IoDone done) {
  if (!can_unmap()) {
    done(-EOPNOTSUPP);
    return;
  }
  auto c = std::make_unique<Command>();
  c->kind = Command::Kind::kTrim;
  c->offset = offset;
  c->length = length;
  c->done = std::move(done);
  Enqueue(std::move(c));
}

void NbdBackend::Kick() {
  const uint64_t one = 1;
  (void)!::write(event_.get(), &one, sizeof(one));
}

absl::Status NbdBackend::Start(std::function<absl::Status()> on_thread_start) {
  if (thread_.joinable()) return absl::OkStatus();
  thread_ =
      std::thread([this, f = std::move(on_thread_start)] { ThreadLoop(f); });
  return absl::OkStatus();
}

void NbdBackend::Stop() {
  if (!thread_.joinable()) {
    // Never started: nothing was issued; fail what was queued.
    std::deque<std::unique_ptr<Command>> left;
    {
      absl::MutexLock lock(&mu_);
      left.swap(queue_);
    }
    for (auto& c : left) Finish(c.release(), -ESHUTDOWN);
    return;
  }
  stopping_.store(true);
  Kick();
  thread_.join();
}

int NbdBackend::OnComplete(void* user_data, int* error) {
  auto* c = static_cast<Command*>(user_data);
  c->backend->Finish(c, *error != 0 ? -*error : 0);
  return 1;  // retire the command
}

void NbdBackend::Finish(Command* c, int64_t result) {
  std::unique_ptr<Command> owned(c);
  if (result == 0 && c->kind == Command::Kind::kWrite && c->flush_after) {
    // FUA without server support: the flush completes the write.
    c->flush_after = false;
    c->kind = Command::Kind::kFlush;
    Issue(std::move(owned));
    return;
  }
  if (result == 0) {
    if (c->kind == Command::Kind::kRead && !c->bounce.empty()) {
      CopyToIovecs(c->bounce, c->iov);
    }
    if (c->kind == Command::Kind::kRead || c->kind == Command::Kind::kWrite) {
      result = static_cast<int64_t>(c->length);
    }
  }
  c->done(result);
  in_flight_.fetch_sub(1);
}

void NbdBackend::Issue(std::unique_ptr<Command> c) {
  Command* raw = c.get();
  nbd_completion_callback cb = {
      .callback = &NbdBackend::OnComplete, .user_data = raw, .free = nullptr};
  int64_t cookie = -1;
  switch (c->kind) {
    case Command::Kind::kRead: {
      void* buf = c->iov.size() == 1 ? c->iov[0].iov_base : nullptr;
      if (buf == nullptr) {
        c->bounce.resize(c->length);
        buf = c->bounce.data();
      }
      cookie = nbd_aio_pread(h_, buf, c->length, c->offset, cb, 0);
      break;
    }
    case Command::Kind::kWrite: {
      const void* buf = c->iov.size() == 1 ? c->iov[0].iov_base : nullptr;
      if (buf == nullptr) {
        // Copied once from guest memory before it goes to the server.
        c->bounce.resize(c->length);
        CopyFromIovecs(c->iov, c->bounce);
        buf = c->bounce.data();
      }
      uint32_t flags = 0;
      if (c->fua && can_fua_) flags |= LIBNBD_CMD_FLAG_FUA;
      if (c->fua && !can_fua_ && can_flush_) c->flush_after = true;
      cookie = nbd_aio_pwrite(h_, buf, c->length, c->offset, cb, flags);
      break;
    }
    case Command::Kind::kFlush:
      if (!can_flush_) {
        Finish(c.release(), 0);
        return;
      }
      cookie = nbd_aio_flush(h_, cb, 0);
      break;
    case Command::Kind::kTrim:
      cookie = nbd_aio_trim(h_, c->length, c->offset, cb, 0);
      break;
  }
  if (cookie < 0) {
    // Refused at submission (the connection is gone): libnbd will not call
    // back for it.
    const int err = nbd_get_errno();
    spdlog::warn("storage {}: NBD command refused: {}", options_.name,
                 NbdError());
    Finish(c.release(), err > 0 ? -err : -EIO);
    return;
  }
  c.release();  // owned by libnbd until OnComplete
}

void NbdBackend::ThreadLoop(std::function<absl::Status()> on_thread_start) {
  if (on_thread_start) {
    if (absl::Status s = on_thread_start(); !s.ok()) {
      spdlog::error("storage {}: NBD thread not started: {}", options_.name,
                    s.ToString());
      // Nothing will be issued: fail what comes until Stop.
      while (!stopping_.load()) {
        std::deque<std::unique_ptr<Command>> left;
        {
          absl::MutexLock lock(&mu_);
          left.swap(queue_);
        }
        for (auto& c : left) Finish(c.release(), -EIO);
        absl::SleepFor(absl::Milliseconds(10));
      }
      return;
    }
  }
  const int sock = nbd_aio_get_fd(h_);
  for (;;) {
    std::deque<std::unique_ptr<Command>> batch;
    {
      absl::MutexLock lock(&mu_);
      batch.swap(queue_);
    }
    for (auto& c : batch) Issue(std::move(c));
    if (stopping_.load() && in_flight_.load() == 0) return;
    pollfd fds[2] = {{event_.get(), POLLIN, 0}, {sock, 0, 0}};
    const unsigned dir = sock >= 0 ? nbd_aio_get_direction(h_) : 0;
    if (dir & LIBNBD_AIO_DIRECTION_READ) fds[1].events |= POLLIN;
    if (dir & LIBNBD_AIO_DIRECTION_WRITE) fds[1].events |= POLLOUT;
    const int n = ::poll(fds, fds[1].events != 0 ? 2 : 1, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("storage {}: poll: {}", options_.name, strerror(errno));
      return;
    }
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      (void)!::read(event_.get(), &v, sizeof(v));
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      if (nbd_aio_notify_read(h_) != 0) {
        spdlog::warn("storage {}: NBD connection: {}", options_.name,
                     NbdError());
      }
    } else if (fds[1].revents & POLLOUT) {
      (void)nbd_aio_notify_write(h_);
    }
  }
}

}  // namespace vsp::storage
