// NbdBackend against a real qemu-nbd serving a qcow2 image (what vmms runs
// for qcow2/VHDX disks): write scattered buffers, FUA, flush, read back,
// trim; the data is in the image afterwards (read back with qemu-img).

#include "vmwp/vsp/storage/nbd_backend.h"

#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

extern char** environ;

namespace vsp::storage {
namespace {

int Shell(const std::string& cmd) { return std::system(cmd.c_str()); }

class NbdBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Shell("command -v qemu-nbd >/dev/null && command -v qemu-img "
              ">/dev/null") != 0) {
      GTEST_SKIP() << "needs qemu-nbd and qemu-img (Debian's qemu-utils)";
    }
    dir_ = getenv("TEST_TMPDIR");
    image_ = dir_ + "/disk.qcow2";
    ASSERT_EQ(Shell("qemu-img create -q -f qcow2 " + image_ + " 4M"), 0);
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    if (!sock_dir_.empty()) Shell("rm -rf " + sock_dir_);
  }

  // qemu-nbd on a unix socket; returns a connected client socket.
  base::ScopedFd Serve() {
    // sun_path holds 108 bytes: TEST_TMPDIR is too deep for it.
    char tmpl[] = "/tmp/hvnbd.XXXXXX";
    if (sock_dir_.empty()) sock_dir_ = ::mkdtemp(tmpl);
    const std::string sock = sock_dir_ + "/nbd.sock";
    ::unlink(sock.c_str());
    std::vector<std::string> args = {"qemu-nbd",
                                     "-f",
                                     "qcow2",
                                     "-x",
                                     "disk",
                                     "-k",
                                     sock,
                                     "--cache=writeback",
                                     "--discard=unmap",
                                     image_};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    EXPECT_EQ(
        posix_spawnp(&pid_, "qemu-nbd", nullptr, nullptr, argv.data(), environ),
        0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock.c_str());
    for (int i = 0; i < 500; ++i) {
      base::ScopedFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr),
                    sizeof(addr)) == 0) {
        return fd;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "qemu-nbd did not listen on " << sock;
    return base::ScopedFd();
  }

  std::unique_ptr<NbdBackend> Connect(bool read_only = false) {
    auto b = NbdBackend::Create(Serve(), {.name = image_,
                                          .export_name = "disk",
                                          .size_bytes = 4 << 20,
                                          .read_only = read_only});
    EXPECT_TRUE(b.ok()) << b.status();
    if (!b.ok()) return nullptr;
    EXPECT_TRUE((*b)->Start(nullptr).ok());
    return *std::move(b);
  }

  // Runs one asynchronous call to completion.
  template <typename Fn>
  int64_t Wait(NbdBackend& b, Fn submit) {
    absl::Notification done;
    int64_t result = 0;
    submit([&](int64_t r) {
      result = r;
      done.Notify();
    });
    b.Kick();
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
    return result;
  }

  std::string dir_, image_, sock_dir_;
  pid_t pid_ = -1;
};

TEST_F(NbdBackendTest, WriteFlushReadTrimOnQcow2) {
  std::unique_ptr<NbdBackend> b = Connect();
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(b->can_unmap());
  EXPECT_FALSE(b->unmap_zeroes());
  // Two scattered pieces (a bounce buffer), then one (direct).
  std::vector<uint8_t> a(3000), c(1096);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint8_t>(i * 7);
  for (size_t i = 0; i < c.size(); ++i) c[i] = static_cast<uint8_t>(i * 3 + 1);
  iovec two[2] = {{a.data(), a.size()}, {c.data(), c.size()}};
  EXPECT_EQ(
      Wait(*b, [&](IoDone d) { b->Write(two, 8192, false, std::move(d)); }),
      4096);
  std::vector<uint8_t> last(512, 0x5A);
  iovec one[1] = {{last.data(), last.size()}};
  EXPECT_EQ(Wait(*b,
                 [&](IoDone d) {
                   b->Write(one, (4 << 20) - 512, /*fua=*/true, std::move(d));
                 }),
            512);
  EXPECT_EQ(Wait(*b, [&](IoDone d) { b->Flush(std::move(d)); }), 0);
  std::vector<uint8_t> x(1000), y(3096);
  iovec back[2] = {{x.data(), x.size()}, {y.data(), y.size()}};
  EXPECT_EQ(Wait(*b, [&](IoDone d) { b->Read(back, 8192, std::move(d)); }),
            4096);
  std::vector<uint8_t> joined(a);
  joined.insert(joined.end(), c.begin(), c.end());
  EXPECT_TRUE(std::equal(x.begin(), x.end(), joined.begin()));
  EXPECT_TRUE(std::equal(y.begin(), y.end(), joined.begin() + 1000));
  EXPECT_EQ(
      Wait(*b, [&](IoDone d) { b->Unmap(1 << 20, 1 << 20, std::move(d)); }), 0);
  b.reset();  // closes the socket: qemu-nbd exits
  ASSERT_EQ(::waitpid(pid_, nullptr, 0), pid_);
  pid_ = -1;
  // What the guest wrote is in the image.
  const std::string raw = dir_ + "/out.raw";
  ASSERT_EQ(Shell("qemu-img convert -f qcow2 -O raw " + image_ + " " + raw), 0);
  std::ifstream f(raw, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), {});
  ASSERT_EQ(bytes.size(), 4u << 20);
  EXPECT_TRUE(std::equal(joined.begin(), joined.end(),
                         reinterpret_cast<uint8_t*>(bytes.data()) + 8192));
  EXPECT_EQ(static_cast<uint8_t>(bytes[(4 << 20) - 1]), 0x5A);
}

TEST_F(NbdBackendTest, ErrorsNameTheDisk) {
  auto b = NbdBackend::Create(
      Serve(), {.name = image_, .export_name = "disk", .size_bytes = 8 << 20});
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find(image_), std::string::npos);
  EXPECT_NE(b.status().message().find("less than the configured size"),
            std::string::npos)
      << b.status();
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  auto wrong = NbdBackend::Create(
      Serve(), {.name = image_, .export_name = "nope", .size_bytes = 4 << 20});
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("handshake"), std::string::npos)
      << wrong.status();
}

TEST_F(NbdBackendTest, AServerThatDiesFailsTheCommands) {
  std::unique_ptr<NbdBackend> b = Connect();
  ASSERT_NE(b, nullptr);
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  std::vector<uint8_t> buf(4096);
  iovec one[1] = {{buf.data(), buf.size()}};
  EXPECT_LT(Wait(*b, [&](IoDone d) { b->Read(one, 0, std::move(d)); }), 0);
}

}  // namespace
}  // namespace vsp::storage
