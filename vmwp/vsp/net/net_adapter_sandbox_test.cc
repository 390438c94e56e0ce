// The adapter's device thread under the worker's real seccomp policy: a
// child process installs the process filter (the union, as the worker's
// lock-down does), the adapter's thread narrows itself to the device-thread
// filter first thing (WorkerHooks::on_device_thread_start does the same in
// vmwp), and the thread that plays the guest narrows to the vCPU filter
// (guest signals arrive on VP threads). Then frames go both ways, the link
// goes down and up, and the adapter stops. A system call outside a filter
// kills the child with SIGSYS (ViolationAction::kKillProcess), which the
// parent reports. No KVM needed: the guest is the VMBus test peer.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "gtest/gtest.h"
#include "spdlog/spdlog.h"
#include "vmwp/sandbox/confine.h"
#include "vmwp/sandbox/seccomp_policy.h"
#include "vmwp/vmbus/server.h"
#include "vmwp/vmbus/test_fake_guest.h"
#include "vmwp/vsp/net/net_adapter.h"
#include "vmwp/vsp/net/test_netvsc_guest.h"

namespace vsp::net {
namespace {

constexpr MacAddress kMac = {0x00, 0x15, 0x5d, 0x00, 0x00, 0x01};

// Exit codes of the child.
enum : int {
  kOk = 0,
  kSetupFailed = 10,
  kBringUpFailed = 11,
  kTxFailed = 12,
  kRxFailed = 13,
  kLinkFailed = 14,
};

std::vector<uint8_t> Frame(size_t size, uint8_t seed) {
  std::vector<uint8_t> f(size, seed);
  std::memcpy(f.data(), kMac.data(), 6);
  f[12] = 0x88;
  f[13] = 0xB5;
  return f;
}

int Child() {
  absl::StatusOr<sandbox::SeccompPolicies> policies =
      sandbox::CompilePolicies(sandbox::ViolationAction::kTrapAndReport);
  if (!policies.ok()) return kSetupFailed;
  vmbus::testing::FakeGuest guest(4096);
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv) != 0)
    return kSetupFailed;
  base::ScopedFd host(sv[1]);
  NetAdapter::Config config;
  config.mac = kMac;
  config.tap = base::ScopedFd(sv[0]);
  config.name = "nic0 (sandboxed)";
  const sandbox::SeccompPolicies* p = &*policies;
  auto adapter = NetAdapter::Create(std::move(config), {.on_thread_start = [p] {
                                      return sandbox::InstallThreadFilter(
                                          *p, sandbox::ThreadKind::kDevice);
                                    }});
  if (!adapter.ok()) return kSetupFailed;
  vmbus::VmbusServer server(guest.memory, guest, {.vp_count = 1});
  guest.server = &server;
  if (!server.AddVsp(adapter->get()).ok()) return kSetupFailed;
  // The worker sets its logger up before lock-down (the console sink asks
  // the terminal once, with an ioctl no filter allows); so does this child.
  spdlog::info("netvsp sandbox test: locking down");
  // The worker's lock-down, with its SIGSYS handler: that answers benign
  // probes with ENOENT, such as glibc reading /sys/devices/system/cpu/online
  // when a thread first counts CPUs (without the handler the child died of
  // SIGSYS ~1 run in 20). Then the device thread starts under it.
  int violations[2];
  if (::pipe2(violations, O_CLOEXEC) != 0) return kSetupFailed;
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return kSetupFailed;
  if (!sandbox::LockDown(*policies, violations[1]).ok()) return kSetupFailed;
  (*adapter)->Start();
  // The guest runs on a thread narrowed to the vCPU filter (guest signals
  // reach the adapter from VP threads); this thread plays the host side.
  std::atomic<int> step{0};
  std::atomic<int> result{kOk};
  const auto out = Frame(1514, 1);
  const auto in = Frame(60, 2);
  std::thread vp([&] {
    auto fail = [&](int code) {
      result = code;
      step = 100;
    };
    if (!sandbox::InstallThreadFilter(*p, sandbox::ThreadKind::kVcpu).ok())
      return fail(kSetupFailed);
    testing::NetvscGuest netvsc(guest, server, [] {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    });
    if (!netvsc.BringUp()) return fail(kBringUpFailed);
    netvsc.SendInSection({testing::NetvscGuest::PacketMessage(out)});
    step = 1;  // the host reads it, then sends `in`
    for (int i = 0; i < 600 && netvsc.frames.empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      netvsc.ProcessInbound();
    }
    if (netvsc.frames.size() != 1 || netvsc.frames[0] != in)
      return fail(kRxFailed);
    step = 2;  // the host takes the link down and up
    for (int i = 0; i < 600 && netvsc.indications.size() < 3; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      netvsc.ProcessInbound();
    }
    if (netvsc.indications.size() < 3) return fail(kLinkFailed);
    step = 3;
  });
  auto wait_step = [&](int want) {
    for (int i = 0; i < 3000 && step.load() < want; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return step.load() == want;
  };
  if (wait_step(1)) {
    uint8_t buf[2048];
    ssize_t n = -1;
    for (int i = 0; i < 400 && n < 0; ++i) {
      n = ::recv(host.get(), buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (n != 1514 || std::memcmp(buf, out.data(), out.size()) != 0) {
      result = kTxFailed;
    }
    (void)!::send(host.get(), in.data(), in.size(), 0);
  }
  if (wait_step(2)) {
    (*adapter)->SetLink(false);
    (*adapter)->SetLink(true);
  }
  vp.join();
  if (result != kOk) return result;
  (*adapter)->Stop();
  return kOk;
}

TEST(NetAdapterSandboxTest, DeviceThreadRunsUnderTheDeviceFilter) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ::_exit(Child());
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  if (WIFSIGNALED(status)) {
    FAIL() << "the child died of signal " << WTERMSIG(status)
           << (WTERMSIG(status) == SIGSYS
                   ? " (SIGSYS: a system call outside its thread's seccomp "
                     "filter; find it with ViolationAction::kLogOnly and "
                     "dmesg | grep type=1326)"
                   : "");
  }
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), kOk)
      << "10 setup, 11 bring-up, 12 guest->TAP, 13 TAP->guest, 14 link";
}

}  // namespace
}  // namespace vsp::net
