#include "vmwp/exit_report.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "base/scoped_fd.h"

namespace vmwp {

using hvstack::internal::WorkerExitReport;

WorkerExitReport ErrorReport(const absl::Status& status) {
  WorkerExitReport report;
  report.set_reason(WorkerExitReport::WORKER_ERROR);
  report.set_status_code(static_cast<int32_t>(status.code()));
  report.set_detail(std::string(status.message()));
  return report;
}

WorkerExitReport OutcomeReport(const vid::RunOutcome& outcome) {
  WorkerExitReport report;
  switch (outcome.kind) {
    case vid::RunOutcome::Kind::kPowerOff:
      report.set_reason(WorkerExitReport::GUEST_POWER_OFF);
      break;
    case vid::RunOutcome::Kind::kCrashed:
      report.set_reason(WorkerExitReport::GUEST_CRASHED);
      break;
    case vid::RunOutcome::Kind::kStopped:
      report.set_reason(WorkerExitReport::STOP_REQUESTED);
      break;
    case vid::RunOutcome::Kind::kReboot:
      // vmms starts a fresh worker for the VM (see worker.proto).
      report.set_reason(WorkerExitReport::REBOOT_REQUESTED);
      break;
  }
  report.set_detail(outcome.detail);
  return report;
}

absl::Status WriteExitReport(const std::string& dir,
                             const WorkerExitReport& report) {
  return WriteExitReportFile(absl::StrCat(dir, "/", kExitReportFile), report);
}

absl::Status WriteExitReportFile(const std::string& path,
                                 const WorkerExitReport& report) {
  const std::string tmp = path + ".tmp";
  std::string bytes;
  if (!report.SerializeToString(&bytes)) {
    return absl::InternalError("cannot serialize the exit report");
  }
  {
    base::ScopedFd fd(
        ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
    if (!fd.valid())
      return absl::ErrnoToStatus(errno, absl::StrCat("cannot create ", tmp));
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n =
          ::write(fd.get(), bytes.data() + done, bytes.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return absl::ErrnoToStatus(errno, absl::StrCat("cannot write ", tmp));
      }
      done += static_cast<size_t>(n);
    }
    // The rename must not become visible before the data (crash consistency).
    if (::fsync(fd.get()) != 0)
      return absl::ErrnoToStatus(errno, absl::StrCat("fsync ", tmp));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::ErrnoToStatus(
        errno, absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

PreopenedExitReport::PreopenedExitReport(base::ScopedFd fd, std::string path)
    : fd_(std::move(fd)), names_{std::move(path)} {}

absl::StatusOr<PreopenedExitReport> PreopenedExitReport::Open(
    const std::string& path) {
  const std::string tmp = path + ".tmp";
  base::ScopedFd fd(
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
  if (!fd.valid())
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot create ", tmp));
  return PreopenedExitReport(std::move(fd), path);
}

void PreopenedExitReport::AddName(const std::string& path) {
  names_.insert(names_.begin(), path);
}

absl::Status PreopenedExitReport::Write(const WorkerExitReport& report) {
  std::string bytes;
  if (!report.SerializeToString(&bytes)) {
    return absl::InternalError("cannot serialize the exit report");
  }
  if (::ftruncate(fd_.get(), 0) != 0)
    return absl::ErrnoToStatus(errno, "cannot truncate the exit report");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::pwrite(fd_.get(), bytes.data() + done,
                               bytes.size() - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, "cannot write the exit report");
    }
    done += static_cast<size_t>(n);
  }
  // The rename must not become visible before the data (crash consistency).
  if (::fsync(fd_.get()) != 0)
    return absl::ErrnoToStatus(errno, "fsync of the exit report");
  int err = 0;
  for (const std::string& name : names_) {
    const std::string tmp = name + ".tmp";
    if (::rename(tmp.c_str(), name.c_str()) == 0) return absl::OkStatus();
    err = errno;
  }
  return absl::ErrnoToStatus(
      err, absl::StrCat("cannot rename the exit report to ", names_.front()));
}

int ExitCodeFor(const WorkerExitReport& report) {
  return report.reason() == WorkerExitReport::WORKER_ERROR ? 1 : 0;
}

}  // namespace vmwp
