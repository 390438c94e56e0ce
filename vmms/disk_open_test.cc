// AwaitImagesUnlocked: a process that held an image under an OFD lock and
// registered it with an io_uring (as the worker's raw-image backend does)
// keeps the lock for a moment after it was reaped; vmms waits for it.
#include "vmms/disk_open.h"

#include <fcntl.h>
#include <liburing.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "base/scoped_fd.h"
#include "gtest/gtest.h"
#include "vmms/test_dir.h"

namespace vmms {
namespace {

// Forks a child that takes a whole-file write lock on `path` (as vmms does
// for a raw disk), registers the file with an io_uring, reads through it and
// exits; returns once the child is reaped.
void LockThroughIoUringAndExit(const std::string& path) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    struct flock fl = {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fd < 0 || ::fcntl(fd, F_OFD_SETLK, &fl) != 0) ::_exit(1);
    io_uring ring;
    if (io_uring_queue_init(8, &ring, 0) != 0) ::_exit(2);
    if (io_uring_register_files(&ring, &fd, 1) != 0) ::_exit(3);
    static char buf[4096];
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_read(sqe, 0, buf, sizeof(buf), 0);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_cqe* cqe;
    if (io_uring_submit(&ring) != 1 || io_uring_wait_cqe(&ring, &cqe) != 0)
      ::_exit(4);
    ::_exit(0);  // the ring (and the file in it) goes after the exit
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

bool CanLockWholeFile(const std::string& path) {
  base::ScopedFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  return fd && ::fcntl(fd.get(), F_OFD_SETLK, &fl) == 0;
}

TEST(AwaitImagesUnlockedTest, WaitsForTheLockAReapedIoUringUserLeft) {
  testing::TestDir dir;
  const std::string image = dir.path() + "/disk.raw";
  ASSERT_EQ(std::system(("truncate -s 1M " + image).c_str()), 0);
  // Several rounds: the release is asynchronous, so one round may be lucky.
  for (int round = 0; round < 5; ++round) {
    LockThroughIoUringAndExit(image);
    if (HasFatalFailure()) return;
    EXPECT_TRUE(
        AwaitImagesUnlocked({image, dir.path() + "/absent"}, absl::Seconds(10))
            .empty());
    EXPECT_TRUE(CanLockWholeFile(image)) << "round " << round;
  }
}

TEST(AwaitImagesUnlockedTest, NamesAnImageStillLockedAtTheLimit) {
  testing::TestDir dir;
  const std::string image = dir.path() + "/disk.raw";
  const std::string free_image = dir.path() + "/free.raw";
  ASSERT_EQ(std::system(("truncate -s 1M " + image + " " + free_image).c_str()),
            0);
  base::ScopedFd holder(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
  struct flock fl = {};
  fl.l_type = F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_len = 1;  // even one byte of a read lock counts
  ASSERT_EQ(::fcntl(holder.get(), F_OFD_SETLK, &fl), 0);
  const absl::Time start = absl::Now();
  std::vector<std::string> held =
      AwaitImagesUnlocked({free_image, image}, absl::Milliseconds(200));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0], image);
  // Released by another thread meanwhile: the wait ends then.
  std::thread release([&] {
    absl::SleepFor(absl::Milliseconds(50));
    holder.reset();
  });
  EXPECT_TRUE(AwaitImagesUnlocked({image}, absl::Seconds(10)).empty());
  release.join();
}

}  // namespace
}  // namespace vmms
