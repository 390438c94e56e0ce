#ifndef HVSTACK_VMWP_CONSOLE_CONSOLE_LOG_FILE_H_
#define HVSTACK_VMWP_CONSOLE_CONSOLE_LOG_FILE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/scoped_fd.h"

namespace vmwp {

// The console log in the VM's runtime directory. A guest controls how much it
// prints, so the file is capped: when the next write would pass `max_bytes`,
// the file becomes
// `<path>.1` (replacing the older one's content) and writing starts afresh. At
// most 2 * max_bytes stay on disk.
//
// Thread-safe. A write error is remembered (and reported by status()) rather
// than failing the VM: losing the log must not kill the guest.
class ConsoleLogFile {
 public:
  static constexpr uint64_t kDefaultMaxBytes = 8ull << 20;

  // Opens `path` and `<path>.1`, creating them; both are emptied unless
  // `append` (a worker that continues a VM after a guest reboot keeps the
  // earlier output). Nothing is opened after this: rotation swaps the two
  // names with renameat2(RENAME_EXCHANGE) and truncates, which the worker's
  // seccomp filter allows.
  static absl::StatusOr<std::unique_ptr<ConsoleLogFile>> Create(
      std::string path, uint64_t max_bytes, bool append = false);

  void Write(std::string_view bytes);

  // OK, or the first write/rotation error.
  absl::Status status() const;
  const std::string& path() const { return path_; }

 private:
  ConsoleLogFile(std::string path, uint64_t max_bytes, base::ScopedFd fd,
                 base::ScopedFd spare)
      : path_(std::move(path)),
        max_bytes_(max_bytes),
        fd_(std::move(fd)),
        spare_(std::move(spare)) {}
  absl::Status RotateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteAllLocked(std::string_view bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const uint64_t max_bytes_;
  mutable absl::Mutex mu_;
  base::ScopedFd fd_ ABSL_GUARDED_BY(mu_);     // the file named <path>
  base::ScopedFd spare_ ABSL_GUARDED_BY(mu_);  // the file named <path>.1
  uint64_t size_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vmwp

#endif  // HVSTACK_VMWP_CONSOLE_CONSOLE_LOG_FILE_H_
