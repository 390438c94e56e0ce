#include "base/fd_handoff.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "base/fd_passing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace base {
namespace {

std::string SocketPath() {
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/h.sock";
  // Unix socket paths are short; Bazel's TEST_TMPDIR may not be.
  if (path.size() > 100) path = "/tmp/hvstack-fd-passing-test.sock";
  return path;
}

TEST(FdPassingTest, ListenerTakesTheDescriptorsWithItsToken) {
  absl::StatusOr<FdHandoffListener> l = FdHandoffListener::Create(SocketPath());
  ASSERT_TRUE(l.ok()) << l.status();
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  // A stale sender with another token is dropped; ours is taken.
  const int other[] = {p[1]};
  ASSERT_TRUE(SendFdsTo(l->path(), "old", other).ok());
  const int fds[] = {p[0], p[1]};
  ASSERT_TRUE(SendFdsTo(l->path(), "save-1", fds).ok());
  absl::StatusOr<std::vector<ScopedFd>> got =
      l->Take("save-1", absl::Seconds(5));
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  // They are the same pipe.
  ASSERT_EQ(::write((*got)[1].get(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(p[0], &c, 1), 1);
  EXPECT_EQ(c, 'x');
  EXPECT_TRUE(::fcntl((*got)[0].get(), F_GETFD) & FD_CLOEXEC);
  ::close(p[0]);
  ::close(p[1]);
  ::unlink(l->path().c_str());
}

TEST(FdPassingTest, TakeTimesOutAndBadInputIsRefused) {
  absl::StatusOr<FdHandoffListener> l = FdHandoffListener::Create(SocketPath());
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->Take("none", absl::Milliseconds(50)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(SendFdsTo(l->path(), "", {}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SendFdsTo("/nonexistent/x.sock", "t", {}).code(),
            absl::StatusCode::kNotFound);
  ::unlink(l->path().c_str());
}

TEST(FdPassingTest, ReceivingTooManyDescriptorsOrNothingIsRefused) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  ScopedFd ours(sv[0]), theirs(sv[1]);
  std::vector<ScopedFd> opened;
  std::vector<int> fds;
  for (size_t i = 0; i <= kMaxHandoffFds; ++i) {
    opened.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    fds.push_back(opened.back().get());
  }
  // A peer that does not use SendFds may pass more than a handoff takes.
  ASSERT_TRUE(SendWithFds(theirs.get(), "t", fds).ok());
  absl::StatusOr<PassedFds> got = ReceiveFds(ours.get());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(got.status().message(),
              ::testing::HasSubstr("fd handoff: 9 descriptors (at most 8)"));
  theirs = ScopedFd();
  got = ReceiveFds(ours.get());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), ::testing::HasSubstr("peer closed"));
}

}  // namespace
}  // namespace base
