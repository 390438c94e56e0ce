// UringFileBackend on a real file and a real ring.
#include "vmwp/vsp/storage/uring_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "vmwp/vsp/storage/test_refused_uring.h"

namespace vsp::storage {
namespace {

// More completions than the completion queue holds, with nobody submitting
// afterwards (a guest waiting for them): the ones in the kernel's overflow
// list must complete too. They used to wait for the next submission, and
// Stop() waited for them forever.
TEST(UringFileBackendTest, CompletionsBeyondTheCompletionQueueAreNotLost) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/img";
  base::ScopedFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600));
  ASSERT_TRUE(fd);
  ASSERT_EQ(::ftruncate(fd.get(), 1 << 20), 0);
  // One submission entry, 16 completion entries: each Read hands the
  // previous one to the kernel, and page-cache reads complete at once.
  auto b = UringFileBackend::Create(
      std::move(fd), {.name = "img", .size_bytes = 1 << 20, .queue_depth = 1});
  ASSERT_TRUE(b.ok()) << b.status();
  constexpr int kReads = 100;
  std::vector<char> buf(kReads * 512, 'x');
  // The iovecs stay valid until their reads complete (the backend's
  // contract: it hands them to the kernel as they are).
  std::vector<iovec> iov(kReads);
  int completed = 0;
  for (int i = 0; i < kReads; ++i) {
    iov[i] = {buf.data() + i * 512, 512};
    (*b)->Read({&iov[i], 1}, static_cast<uint64_t>(i) * 512,
               [&](int64_t result) {
                 EXPECT_EQ(result, 512);
                 ++completed;
               });
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (completed < kReads && absl::Now() < deadline) {
    (*b)->Kick();
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(completed, kReads);
  EXPECT_EQ((*b)->in_flight(), 0u);
  EXPECT_EQ(buf[0], 0);  // a hole reads as zeros
}

// The kernel refuses a submission while the SQ is full (io_uring_enter can
// fail with EBUSY or EAGAIN under memory or CQ pressure; here seccomp makes
// it fail for one thread, which is as real a failure as those): the request
// that found no free entry fails with that error (it used to write through
// a null entry), and the entry prepared before goes in with the next Kick.
TEST(UringFileBackendTest, AFailedSubmissionFailsOnlyTheRequestWithoutAnEntry) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/img2";
  base::ScopedFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600));
  ASSERT_TRUE(fd);
  ASSERT_EQ(::ftruncate(fd.get(), 1 << 20), 0);
  auto b = UringFileBackend::Create(
      std::move(fd), {.name = "img2", .size_bytes = 1 << 20, .queue_depth = 1});
  ASSERT_TRUE(b.ok()) << b.status();
  std::vector<char> buf(3 * 512, 'x');
  iovec iov[3] = {
      {buf.data(), 512}, {buf.data() + 512, 512}, {buf.data() + 1024, 512}};
  int64_t first = 1, second = 1, third = 1;
  std::thread refused([&] {
    ASSERT_TRUE(RefuseIoUringEnterOnThisThread());
    // The first takes the one entry; the second finds the SQ full and the
    // submission refused.
    (*b)->Read({&iov[0], 1}, 0, [&](int64_t r) { first = r; });
    (*b)->Read({&iov[1], 1}, 512, [&](int64_t r) { second = r; });
    (*b)->Kick();  // refused too: nothing lost, nothing completed
  });
  refused.join();
  EXPECT_EQ(second, -EBUSY);
  EXPECT_EQ(first, 1);
  EXPECT_EQ((*b)->in_flight(), 1u);
  // A thread the kernel serves: the prepared entry goes in and completes,
  // and the backend takes new requests again.
  (*b)->Read({&iov[2], 1}, 1024, [&](int64_t r) { third = r; });
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((first != 512 || third != 512) && absl::Now() < deadline) {
    (*b)->Kick();
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(first, 512);
  EXPECT_EQ(third, 512);
  EXPECT_EQ((*b)->in_flight(), 0u);
  EXPECT_EQ(buf[0], 0);
}

}  // namespace
}  // namespace vsp::storage
