#include "base/fd_passing.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "gtest/gtest.h"

namespace base {
namespace {

TEST(FdPassingTest, BytesAndDescriptorsArriveTogether) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  ScopedFd a(sv[0]), b(sv[1]);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  ScopedFd read_end(p[0]), write_end(p[1]);

  ASSERT_TRUE(SendWithFds(a.get(), "hello", {write_end.get()}).ok());
  absl::StatusOr<ReceivedMessage> got = ReceiveWithFds(b.get(), 64);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->bytes, "hello");
  ASSERT_EQ(got->fds.size(), 1u);
  EXPECT_NE(::fcntl(got->fds[0].get(), F_GETFD) & FD_CLOEXEC, 0);
  // The passed descriptor is the same pipe.
  ASSERT_EQ(::write(got->fds[0].get(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(read_end.get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
}

TEST(FdPassingTest, ClosedPeerGivesAnEmptyMessage) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  ScopedFd a(sv[0]), b(sv[1]);
  a.reset();
  absl::StatusOr<ReceivedMessage> got = ReceiveWithFds(b.get(), 64);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->bytes.empty());
  EXPECT_TRUE(got->fds.empty());
}

TEST(FdPassingTest, TooLongAMessageIsAnErrorNotAPrefix) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  ScopedFd a(sv[0]), b(sv[1]);
  ASSERT_TRUE(SendWithFds(a.get(), std::string(100, 'y'), {}).ok());
  absl::StatusOr<ReceivedMessage> got = ReceiveWithFds(b.get(), 10);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace base
