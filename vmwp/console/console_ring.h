#ifndef HVSTACK_VMWP_CONSOLE_CONSOLE_RING_H_
#define HVSTACK_VMWP_CONSOLE_CONSOLE_RING_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace vmwp {

// The most recent console output of a VM, bounded in size. Every byte ever
// appended has an offset that grows monotonically; the ring keeps the last
// `capacity` of them, so a reader can resume from the offset it reached and
// learns when it fell behind (bytes were overwritten).
//
// Thread-safe. Readers may block waiting for new output; Close() (the VM ended)
// wakes them.
class ConsoleRing {
 public:
  static constexpr size_t kDefaultCapacity = 1 << 20;  // 1 MiB.

  struct Chunk {
    std::string data;
    // Offset of data[0]. Larger than the requested offset when older bytes were
    // overwritten.
    uint64_t offset = 0;
    // Where the next read should start.
    uint64_t next_offset = 0;
    // No more output will ever arrive (and none is left beyond next_offset).
    bool closed = false;
  };

  // Lets another thread abandon a blocked WaitAndRead. Cancel() wakes the
  // reader promptly.
  class CancelToken {
   public:
    explicit CancelToken(ConsoleRing* ring) : ring_(ring) {}
    void Cancel();
    bool cancelled() const {
      return cancelled_.load(std::memory_order_acquire);
    }

   private:
    ConsoleRing* const ring_;
    std::atomic<bool> cancelled_{false};
  };

  explicit ConsoleRing(size_t capacity = kDefaultCapacity);

  void Append(std::string_view bytes);
  // Marks the end of output. Appends after Close are dropped.
  void Close();

  // Offset one past the newest byte (= total bytes ever appended).
  uint64_t end_offset() const;
  // Offset of the oldest byte still retained.
  uint64_t start_offset() const;

  // Returns up to `max_bytes` from `offset` (clamped to start_offset()) without
  // blocking.
  Chunk Read(uint64_t offset, size_t max_bytes) const;

  // Like Read, but first waits until there is data at or beyond `offset`, the
  // ring is closed, `deadline` passes or `cancel` (may be null) is cancelled.
  // An empty, non-closed chunk means timeout or cancellation.
  Chunk WaitAndRead(uint64_t offset, size_t max_bytes, absl::Time deadline,
                    const CancelToken* cancel = nullptr) const;

 private:
  Chunk ReadLocked(uint64_t offset, size_t max_bytes) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  uint64_t StartLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Makes blocked readers re-check their cancellation tokens.
  void WakeReaders();

  const size_t capacity_;
  mutable absl::Mutex mu_;
  // Not value-initialized: only bytes below end_ are ever read, and pages the
  // guest never wrote to stay untouched (no RSS for a quiet console).
  const std::unique_ptr<char[]> buffer_ ABSL_PT_GUARDED_BY(mu_);
  uint64_t end_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace vmwp

#endif  // HVSTACK_VMWP_CONSOLE_CONSOLE_RING_H_
