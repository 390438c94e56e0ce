#include "base/fd_handoff.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>

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

}  // namespace
}  // namespace base
