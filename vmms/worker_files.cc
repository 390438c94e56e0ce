#include "vmms/worker_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/scoped_fd.h"

namespace vmms {

absl::Status WriteWorkerConfig(const std::string& path,
                               const hvstack::internal::WorkerConfig& config) {
  std::string tmp = path + ".tmp";
  base::ScopedFd fd(
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  auto error = [&](absl::string_view what) {
    return absl::InternalError(
        absl::StrCat(what, " ", tmp, ": ", std::strerror(errno)));
  };
  if (!fd) return error("cannot create");
  std::string bytes;
  if (!config.SerializeToString(&bytes)) {
    return absl::InternalError("cannot serialize WorkerConfig");
  }
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return error("cannot write");
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return error("cannot sync");
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) return error("cannot rename");
  return absl::OkStatus();
}

std::string ReadTail(const std::string& path, size_t max_bytes) {
  base::ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return "";
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return "";
  off_t size = st.st_size;
  off_t start = size > static_cast<off_t>(max_bytes)
                    ? size - static_cast<off_t>(max_bytes)
                    : 0;
  std::string data(static_cast<size_t>(size - start), '\0');
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pread(fd.get(), data.data() + done, data.size() - done,
                        start + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  data.resize(done);
  return data;
}

std::string ReadConsoleTail(const std::string& path, size_t max_bytes) {
  std::string current = ReadTail(path, max_bytes);
  if (current.size() >= max_bytes) return current;
  return ReadTail(path + ".1", max_bytes - current.size()) + current;
}

std::optional<hvstack::internal::WorkerExitReport> ReadExitReport(
    const std::string& path) {
  base::ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  hvstack::internal::WorkerExitReport report;
  if (!report.ParseFromFileDescriptor(fd.get()) ||
      report.reason() ==
          hvstack::internal::WorkerExitReport::REASON_UNSPECIFIED) {
    return std::nullopt;
  }
  return report;
}

}  // namespace vmms
