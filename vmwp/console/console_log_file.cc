#include "vmwp/console/console_log_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace vmwp {
namespace {

absl::Status ErrnoError(std::string_view what, const std::string& path,
                        int err) {
  return absl::ErrnoToStatus(
      err, absl::StrCat("console log ", path, ": ", std::string(what)));
}

// Both files are opened up front: after the worker's seccomp lock-down no
// file can be opened or created, so rotation only renames and truncates.
absl::StatusOr<base::ScopedFd> OpenLog(const std::string& path, bool append) {
  base::ScopedFd fd(
      ::open(path.c_str(),
             O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (append ? 0 : O_TRUNC),
             0640));
  if (!fd.valid()) return ErrnoError("cannot open", path, errno);
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ConsoleLogFile>> ConsoleLogFile::Create(
    std::string path, uint64_t max_bytes, bool append) {
  if (max_bytes == 0)
    return absl::InvalidArgumentError("console log: max_bytes must be > 0");
  absl::StatusOr<base::ScopedFd> fd = OpenLog(path, append);
  if (!fd.ok()) return fd.status();
  absl::StatusOr<base::ScopedFd> spare = OpenLog(path + ".1", append);
  if (!spare.ok()) return spare.status();
  struct stat st;
  if (::fstat(fd->get(), &st) != 0)
    return ErrnoError("cannot stat", path, errno);
  auto log = std::unique_ptr<ConsoleLogFile>(new ConsoleLogFile(
      std::move(path), max_bytes, *std::move(fd), *std::move(spare)));
  log->size_ = static_cast<uint64_t>(st.st_size);
  return log;
}

void ConsoleLogFile::Write(std::string_view bytes) {
  absl::MutexLock lock(&mu_);
  if (!status_.ok()) return;
  while (!bytes.empty()) {
    if (size_ >= max_bytes_) {
      status_ = RotateLocked();
      if (!status_.ok()) return;
    }
    const size_t n = static_cast<size_t>(
        std::min<uint64_t>(bytes.size(), max_bytes_ - size_));
    status_ = WriteAllLocked(bytes.substr(0, n));
    if (!status_.ok()) return;
    bytes.remove_prefix(n);
  }
}

absl::Status ConsoleLogFile::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

absl::Status ConsoleLogFile::RotateLocked() {
  const std::string old = path_ + ".1";
  // Swap the names: the full file becomes <path>.1, the previous <path>.1
  // becomes <path>, is emptied and written from now on (O_APPEND: at 0).
  if (::renameat2(AT_FDCWD, path_.c_str(), AT_FDCWD, old.c_str(),
                  RENAME_EXCHANGE) != 0) {
    return ErrnoError("cannot rotate", path_, errno);
  }
  if (::ftruncate(spare_.get(), 0) != 0)
    return ErrnoError("cannot truncate", path_, errno);
  std::swap(fd_, spare_);
  size_ = 0;
  return absl::OkStatus();
}

absl::Status ConsoleLogFile::WriteAllLocked(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd_.get(), bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("write failed", path_, errno);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
    size_ += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace vmwp
