#include "vmwp/console/console_ring.h"

#include <algorithm>

namespace vmwp {

void ConsoleRing::CancelToken::Cancel() {
  cancelled_.store(true, std::memory_order_release);
  ring_->WakeReaders();
}

ConsoleRing::ConsoleRing(size_t capacity)
    : capacity_(std::max<size_t>(capacity, 1)), buffer_(new char[capacity_]) {}

void ConsoleRing::Append(std::string_view bytes) {
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  // Only the tail can survive when the write is larger than the ring.
  const uint64_t total = bytes.size();
  if (bytes.size() > capacity_) bytes.remove_prefix(bytes.size() - capacity_);
  uint64_t pos = end_ + (total - bytes.size());
  while (!bytes.empty()) {
    const size_t at = pos % capacity_;
    const size_t n = std::min(bytes.size(), capacity_ - at);
    std::copy_n(bytes.data(), n, buffer_.get() + at);
    bytes.remove_prefix(n);
    pos += n;
  }
  end_ += total;
}

void ConsoleRing::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

void ConsoleRing::WakeReaders() {
  // absl::Mutex re-evaluates waiters' conditions when the lock is released.
  absl::MutexLock lock(&mu_);
}

uint64_t ConsoleRing::end_offset() const {
  absl::ReaderMutexLock lock(&mu_);
  return end_;
}

uint64_t ConsoleRing::start_offset() const {
  absl::ReaderMutexLock lock(&mu_);
  return StartLocked();
}

uint64_t ConsoleRing::StartLocked() const {
  return end_ > capacity_ ? end_ - capacity_ : 0;
}

ConsoleRing::Chunk ConsoleRing::Read(uint64_t offset, size_t max_bytes) const {
  absl::ReaderMutexLock lock(&mu_);
  return ReadLocked(offset, max_bytes);
}

ConsoleRing::Chunk ConsoleRing::ReadLocked(uint64_t offset,
                                           size_t max_bytes) const {
  Chunk chunk;
  const uint64_t from = std::min(std::max(offset, StartLocked()), end_);
  const size_t n =
      static_cast<size_t>(std::min<uint64_t>(end_ - from, max_bytes));
  chunk.offset = from;
  chunk.next_offset = from + n;
  chunk.data.resize(n);
  size_t copied = 0;
  while (copied < n) {
    const size_t at = (from + copied) % capacity_;
    const size_t len = std::min(n - copied, capacity_ - at);
    std::copy_n(buffer_.get() + at, len, chunk.data.data() + copied);
    copied += len;
  }
  chunk.closed = closed_ && chunk.next_offset == end_;
  return chunk;
}

ConsoleRing::Chunk ConsoleRing::WaitAndRead(uint64_t offset, size_t max_bytes,
                                            absl::Time deadline,
                                            const CancelToken* cancel) const {
  struct Args {
    const ConsoleRing* ring;
    uint64_t offset;
    const CancelToken* cancel;
  } args{this, offset, cancel};
  auto ready = [](Args* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return a->ring->end_ > a->offset || a->ring->closed_ ||
           (a->cancel != nullptr && a->cancel->cancelled());
  };
  absl::ReaderMutexLock lock(&mu_);
  mu_.AwaitWithDeadline(absl::Condition(+ready, &args), deadline);
  if (cancel != nullptr && cancel->cancelled()) {
    Chunk empty;
    empty.offset = empty.next_offset = std::max(offset, StartLocked());
    return empty;
  }
  return ReadLocked(offset, max_bytes);
}

}  // namespace vmwp
