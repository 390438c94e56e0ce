#ifndef HVSTACK_VID_IO_DISPATCHER_H_
#define HVSTACK_VID_IO_DISPATCHER_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/log_rate_limiter.h"
#include "vid/io_handler.h"

namespace vid {

// Routes port I/O and MMIO intercepts to the devices registered for them.
//
// Handlers are not owned: a handler must stay alive until it is unregistered or
// the dispatcher (i.e. the vid::Partition) is destroyed. Registration may
// happen at any time, also while VPs run. Dispatch is called from VP threads,
// concurrently; handlers do their own locking.
//
// Accesses nobody handles behave like an empty bus: reads return all ones
// (0xFF.. of the access size), writes are dropped. They are counted and logged
// (spdlog, warn) -- the first kUnhandledLogBurst of each kind individually,
// then at most one summary per second per kind -- so a guest probing for
// hardware neither crashes nor floods the log.
class IoDispatcher {
 public:
  static constexpr int kUnhandledLogBurst = base::LogRateLimiter::kDefaultBurst;

  enum UnhandledKind {
    kPortRead,
    kPortWrite,
    kMmioRead,
    kMmioWrite,
    kNumUnhandledKinds
  };

  IoDispatcher() = default;
  IoDispatcher(const IoDispatcher&) = delete;
  IoDispatcher& operator=(const IoDispatcher&) = delete;

  // Claims ports [first, first+count). `name` appears in logs and errors
  // ("com1"). Fails with AlreadyExists if any port is already claimed,
  // InvalidArgument for an empty or wrapping range or a null handler.
  absl::Status RegisterPortIo(absl::string_view name, uint16_t first,
                              uint32_t count, PortIoHandler* handler);
  // Claims guest-physical [gpa, gpa+len). Same rules.
  absl::Status RegisterMmio(absl::string_view name, uint64_t gpa, uint64_t len,
                            MmioHandler* handler);
  // Removes the registration that starts exactly at `first` / `gpa`. NotFound
  // otherwise.
  absl::Status UnregisterPortIo(uint16_t first);
  absl::Status UnregisterMmio(uint64_t gpa);

  // Dispatch, called by the VP loop. `size` is 1, 2 or 4. The handler is chosen
  // by the first port/byte of the access.
  uint32_t PortRead(uint16_t port, uint8_t size);
  void PortWrite(uint16_t port, uint8_t size, uint32_t value);
  void MmioRead(uint64_t gpa, std::span<uint8_t> data);
  void MmioWrite(uint64_t gpa, std::span<const uint8_t> data);

  // How many accesses of each kind found no handler so far.
  uint64_t unhandled_count(UnhandledKind kind) const {
    return unhandled_[kind].count();
  }

 private:
  template <typename Handler>
  struct Range {
    uint64_t end;  // exclusive
    std::string name;
    Handler* handler;
  };

  PortIoHandler* FindPort(uint16_t port) const;
  MmioHandler* FindMmio(uint64_t gpa) const;
  void NoteUnhandled(UnhandledKind kind, uint64_t address, uint32_t size,
                     uint64_t value);

  mutable absl::Mutex mu_;
  // Keyed by the first port / gpa of each range.
  std::map<uint64_t, Range<PortIoHandler>> ports_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Range<MmioHandler>> mmio_ ABSL_GUARDED_BY(mu_);

  base::LogRateLimiter unhandled_[kNumUnhandledKinds] = {
      base::LogRateLimiter("unhandled port reads"),
      base::LogRateLimiter("unhandled port writes"),
      base::LogRateLimiter("unhandled MMIO reads"),
      base::LogRateLimiter("unhandled MMIO writes")};
};

}  // namespace vid

#endif  // HVSTACK_VID_IO_DISPATCHER_H_
