// UringFileBackend on a real file and a real ring.
#include "vmwp/vsp/storage/uring_backend.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

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
  int completed = 0;
  for (int i = 0; i < kReads; ++i) {
    iovec v{buf.data() + i * 512, 512};
    (*b)->Read({&v, 1}, static_cast<uint64_t>(i) * 512, [&](int64_t result) {
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

}  // namespace
}  // namespace vsp::storage
