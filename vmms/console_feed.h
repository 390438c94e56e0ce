#ifndef HVSTACK_VMMS_CONSOLE_FEED_H_
#define HVSTACK_VMMS_CONSOLE_FEED_H_

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace vmms {

// One run of a VM's serial console produced inside vmms (the libvirt
// backend's console stream): appended to the VM's console log and kept in
// memory (the newest kRetained bytes) for followers. Input goes to `writer`
// (the stream's send side). Thread-safe.
class ConsoleFeed {
 public:
  static constexpr size_t kRetained = 1 << 20;
  // Appends to `log_path` (created if missing).
  explicit ConsoleFeed(const std::string& log_path);
  ~ConsoleFeed();
  ConsoleFeed(const ConsoleFeed&) = delete;
  ConsoleFeed& operator=(const ConsoleFeed&) = delete;

  void Append(absl::string_view data);
  // The run's console ended (the domain stopped): followers get the rest,
  // then the end.
  void End();
  // Whether End was called.
  bool Ended() const;

  // Output after absolute offset `*position` (0 = the oldest retained byte),
  // waiting up to `timeout` for some; advances `*position`. False once the
  // feed ended and everything was read.
  bool Read(uint64_t* position, std::string* out, absl::Duration timeout);

  // Console input for the guest.
  using Writer = std::function<absl::Status(absl::string_view)>;
  void SetWriter(Writer writer);
  absl::Status Write(absl::string_view data);

 private:
  bool HasNews(uint64_t position) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  FILE* log_ ABSL_GUARDED_BY(mu_) = nullptr;
  // The newest bytes; `start_` is the absolute offset of buffer_[0].
  std::string buffer_ ABSL_GUARDED_BY(mu_);
  uint64_t start_ ABSL_GUARDED_BY(mu_) = 0;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  Writer writer_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vmms

#endif  // HVSTACK_VMMS_CONSOLE_FEED_H_
