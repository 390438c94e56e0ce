// The network path end to end through the real vmwp binary: a UnixHv guest
// (//guest:network, the netvsc client of guest/unixhv/netvsc.h) on a real
// KVM partition, netvsp in the worker, and TAP devices this test creates in
// a network namespace of its own (the host's network is never touched),
// handed to the worker as vmms hands them (inherited descriptors named in
// WorkerConfig.nics). Frames are checked byte for byte on the TAP
// interface through AF_PACKET. Without /dev/kvm the binary runs inside
// kvmbox (tests/kvmbox).
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proto/hvstack/internal/worker.grpc.pb.h"
#include "vmwp/vsp/net/test_tap.h"

extern char** environ;

namespace {

using hvstack::internal::WorkerConfig;
using hvstack::internal::WorkerExitReport;
using vsp::net::testing::TestTap;

constexpr uint16_t kEtherType = 0x88B5;
constexpr uint8_t kBroadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
constexpr uint8_t kHostMac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0xfe};

std::string netns_problem;

class NetnsEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (::access("/dev/kvm", R_OK | W_OK) != 0) return;  // tests skip
    netns_problem = vsp::net::testing::EnterNewNetworkNamespace();
  }
};
const auto* const env =
    ::testing::AddGlobalTestEnvironment(new NetnsEnvironment);

std::string Runfile(const std::string& path) {
  return absl::StrCat(std::getenv("TEST_SRCDIR"), "/hvstack/", path);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// guest/network.cc's frame: dst | src | 0x88B5 | size | pattern.
std::vector<uint8_t> PatternFrame(const uint8_t* dst, const uint8_t* src,
                                  uint32_t size) {
  std::vector<uint8_t> f(size);
  std::memcpy(f.data(), dst, 6);
  std::memcpy(f.data() + 6, src, 6);
  f[12] = 0x88;
  f[13] = 0xB5;
  f[14] = static_cast<uint8_t>(size >> 8);
  f[15] = static_cast<uint8_t>(size);
  for (uint32_t i = 16; i < size; ++i)
    f[i] = static_cast<uint8_t>(i * 13 + (i >> 8) * 7 + 0x5A);
  return f;
}

// Frames of ours arriving on a TAP interface, collected on a thread.
class Collector {
 public:
  explicit Collector(TestTap& tap) : tap_(tap) {
    thread_ = std::thread([this] {
      while (!stop_) {
        auto f = vsp::net::testing::WireReceive(tap_, kEtherType,
                                                absl::Milliseconds(100));
        if (!f) continue;
        std::lock_guard<std::mutex> lock(mu_);
        frames_.push_back(*std::move(f));
      }
    });
  }
  ~Collector() {
    stop_ = true;
    thread_.join();
  }
  std::vector<std::vector<uint8_t>> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::move(frames_);
  }

 private:
  TestTap& tap_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::vector<uint8_t>> frames_;
  std::thread thread_;
};

// One vmwp with the network guest and its NICs.
class Worker {
 public:
  Worker(const std::string& name, const std::string& cmdline,
         const std::string& guest = "guest/network.elf") {
    char dir[] = "/tmp/vmwpnetXXXXXX";
    EXPECT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    config_.set_vm_name(name);
    config_.set_vm_uuid("00000000-0000-4000-8000-0000000000" +
                        std::to_string(10 + name.size()));
    config_.set_vcpus(1);
    config_.set_memory_mib(64);
    config_.set_kernel_path(Runfile(guest));
    config_.set_cmdline(cmdline);
    config_.set_runtime_dir(dir_);
    config_.set_socket_path(dir_ + "/worker.sock");
    config_.set_kvm_fd(-1);
    config_.set_kvm_device_path("/dev/kvm");
    config_.set_enlightened(true);
  }
  ~Worker() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (!::testing::Test::HasFailure()) {
      (void)!std::system(("rm -rf " + dir_).c_str());
    } else {
      std::cerr << "console of " << config_.vm_name() << ":\n"
                << Console() << "\nworker.log:\n"
                << ReadFile(dir_ + "/worker.log") << "\n";
    }
  }

  void AddNic(uint32_t index, const uint8_t* mac, TestTap& tap,
              bool vnet_header, uint32_t mtu = 1500) {
    auto* nic = config_.add_nics();
    nic->set_index(index);
    nic->set_mac(std::string(reinterpret_cast<const char*>(mac), 6));
    nic->set_tap_fd(40 + static_cast<int>(index));
    nic->set_vnet_hdr(vnet_header);
    nic->set_mtu(mtu);
    nic->set_host_ifname(tap.name);
    taps_.push_back(tap.fd.get());
  }

  void Start() {
    {
      std::ofstream out(dir_ + "/worker_config.pb", std::ios::binary);
      ASSERT_TRUE(config_.SerializeToOstream(&out));
    }
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    ready_ = fds[0];
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 4);
    for (size_t i = 0; i < taps_.size(); ++i) {
      posix_spawn_file_actions_adddup2(&actions, taps_[i],
                                       40 + static_cast<int>(i));
    }
    const std::string binary = Runfile("vmwp/vmwp");
    const std::string config_flag = "--config=" + dir_ + "/worker_config.pb";
    char* argv[] = {const_cast<char*>(binary.c_str()),
                    const_cast<char*>(config_flag.c_str()),
                    const_cast<char*>("--ready-fd=4"), nullptr};
    ASSERT_EQ(
        posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv, environ),
        0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    pollfd p = {ready_, POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 600000), 1)
        << "worker not ready: " << ReadFile(dir_ + "/worker.log");
    char byte;
    ASSERT_EQ(::read(ready_, &byte, 1), 1)
        << "worker gave up: " << ReadFile(dir_ + "/worker.log");
    ::close(ready_);
    stub_ = hvstack::internal::WorkerService::NewStub(grpc::CreateChannel(
        "unix:" + config_.socket_path(), grpc::InsecureChannelCredentials()));
  }

  std::string Console() const { return ReadFile(dir_ + "/console.log"); }

  // Waits for `text` on the guest's console.
  bool WaitFor(const std::string& text,
               absl::Duration timeout = absl::Minutes(5)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (Console().find(text) != std::string::npos) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  grpc::Status SetLink(uint32_t index, bool connected) {
    grpc::ClientContext ctx;
    hvstack::internal::SetNicLinkRequest r;
    r.set_index(index);
    r.set_connected(connected);
    hvstack::internal::SetNicLinkResponse response;
    return stub_->SetNicLink(&ctx, r, &response);
  }
  hvstack::internal::WorkerStatus Status() {
    grpc::ClientContext ctx;
    hvstack::internal::WorkerStatus s;
    const grpc::Status got = stub_->GetStatus(&ctx, {}, &s);
    EXPECT_TRUE(got.ok()) << got.error_message();
    return s;
  }

  // Waits for the worker to end; its exit report.
  std::optional<WorkerExitReport> Wait(
      absl::Duration timeout = absl::Minutes(2)) {
    const absl::Time deadline = absl::Now() + timeout;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) != pid_) {
      if (absl::Now() > deadline) return std::nullopt;
      absl::SleepFor(absl::Milliseconds(20));
    }
    pid_ = -1;
    std::ifstream in(dir_ + "/exit_report.pb", std::ios::binary);
    WorkerExitReport report;
    if (!in || !report.ParseFromIstream(&in)) return std::nullopt;
    return report;
  }

 private:
  std::string dir_;
  WorkerConfig config_;
  std::vector<int> taps_;
  pid_t pid_ = -1;
  int ready_ = -1;
  std::unique_ptr<hvstack::internal::WorkerService::Stub> stub_;
};

class VmwpNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/kvm", R_OK | W_OK) != 0)
      GTEST_SKIP() << "no usable /dev/kvm";
    if (!netns_problem.empty()) GTEST_SKIP() << netns_problem;
  }
  TestTap Tap(const std::string& name, uint32_t mtu = 1500) {
    // A long transmit queue: the test sends a burst the guest takes at its
    // own pace.
    auto t =
        vsp::net::testing::CreateTap(name, /*vnet_header=*/true, mtu, 10000);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *std::move(t) : TestTap{};
  }
};

constexpr uint8_t kGuestMac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};

TEST_F(VmwpNetworkTest, EveryFrameSizeBothWaysAndLinkDownUp) {
  TestTap tap = Tap("vtap0");
  ASSERT_TRUE(tap.fd.valid());
  Worker vm("net1", "phases=trl");
  vm.AddNic(0, kGuestMac, tap, true);
  Collector wire(tap);
  const absl::Time start = absl::Now();
  ASSERT_NO_FATAL_FAILURE(vm.Start());
  ASSERT_TRUE(
      vm.WaitFor("network: nic0 up: nvsp 0x60001 mtu 1500 mac "
                 "02:00:00:00:00:01 link up"))
      << vm.Console();
  // Guest -> TAP: every size, byte for byte.
  ASSERT_TRUE(vm.WaitFor("network: tx done 1455 frames, 0 errors"))
      << vm.Console();
  std::cout << "guest tx of 1455 frames: " << absl::Now() - start
            << " since start" << std::endl;
  absl::SleepFor(absl::Milliseconds(200));
  std::vector<std::vector<uint8_t>> out = wire.Take();
  ASSERT_EQ(out.size(), 1455u);
  for (uint32_t size = 60; size <= 1514; ++size) {
    ASSERT_EQ(out[size - 60], PatternFrame(kBroadcast, kGuestMac, size))
        << "frame of " << size << " bytes";
  }
  // TAP -> guest: every size, in order; the guest checks them.
  ASSERT_TRUE(vm.WaitFor("network: rx ready")) << vm.Console();
  const absl::Time rx_start = absl::Now();
  for (uint32_t size = 60; size <= 1514; ++size) {
    ASSERT_TRUE(vsp::net::testing::WireSend(
                    tap, PatternFrame(kGuestMac, kHostMac, size))
                    .ok());
  }
  ASSERT_TRUE(vm.WaitFor("network: rx done 1455 frames, 0 errors"))
      << vm.Console();
  std::cout << "guest rx of 1455 frames: " << absl::Now() - rx_start
            << std::endl;
  // Link down and up, as the guest sees them.
  ASSERT_TRUE(vm.WaitFor("network: link phase")) << vm.Console();
  ASSERT_TRUE(vm.SetLink(0, false).ok());
  ASSERT_TRUE(vm.WaitFor("network: link down")) << vm.Console();
  // The counters while the guest waits for the link to come back (it powers
  // off right after that).
  const hvstack::internal::WorkerStatus status = vm.Status();
  ASSERT_EQ(status.nics_size(), 1);
  const auto& nic = status.nics(0);
  EXPECT_FALSE(nic.link_up());
  EXPECT_TRUE(nic.guest_ready());
  EXPECT_EQ(nic.nvsp_version(), 0x60001u);
  EXPECT_EQ(nic.from_guest_packets(), 1455u);
  EXPECT_EQ(nic.from_guest_drops(), 0u);
  EXPECT_GE(nic.to_guest_packets(), 1455u);
  EXPECT_EQ(nic.protocol_errors(), 0u);
  std::cout << "nic0 status: " << nic.ShortDebugString() << std::endl;
  EXPECT_EQ(vm.SetLink(7, true).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(vm.SetLink(0, true).ok());
  ASSERT_TRUE(vm.WaitFor("network: link up")) << vm.Console();
  ASSERT_TRUE(vm.WaitFor("network: tx after link up ok")) << vm.Console();
  ASSERT_TRUE(vm.WaitFor("network: done, 0 errors")) << vm.Console();
  auto report = vm.Wait();
  ASSERT_TRUE(report.has_value());
  EXPECT_EQ(report->reason(), WorkerExitReport::GUEST_POWER_OFF);
}

// Jumbo frames (netvsp takes MTUs up to 9000): a NIC and TAP of MTU 9000,
// sizes from 1515 up in steps of 251 and the largest (9014), both ways, byte
// for byte. Odd sizes go as GPA-direct ranges, even ones in a send section
// while they fit one (6144 bytes with the RNDIS header), GPA-direct above.
TEST_F(VmwpNetworkTest, JumboFramesBothWays) {
  TestTap tap = Tap("vtapj", 9000);
  ASSERT_TRUE(tap.fd.valid());
  // hold: the guest halts at the end, so that its counters can be read.
  Worker vm("netj", "phases=tr min=1515 step=251 hold");
  vm.AddNic(0, kGuestMac, tap, true, 9000);
  Collector wire(tap);
  std::vector<uint32_t> sizes;
  for (uint32_t size = 1515; size < 9014; size += 251) sizes.push_back(size);
  sizes.push_back(9014);
  const std::string count = std::to_string(sizes.size());
  ASSERT_NO_FATAL_FAILURE(vm.Start());
  ASSERT_TRUE(
      vm.WaitFor("network: nic0 up: nvsp 0x60001 mtu 9000 mac "
                 "02:00:00:00:00:01 link up"))
      << vm.Console();
  ASSERT_TRUE(vm.WaitFor("network: tx done " + count + " frames, 0 errors"))
      << vm.Console();
  absl::SleepFor(absl::Milliseconds(200));
  std::vector<std::vector<uint8_t>> out = wire.Take();
  ASSERT_EQ(out.size(), sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_EQ(out[i], PatternFrame(kBroadcast, kGuestMac, sizes[i]))
        << "frame of " << sizes[i] << " bytes";
  }
  ASSERT_TRUE(vm.WaitFor("network: rx ready")) << vm.Console();
  for (uint32_t size : sizes) {
    ASSERT_TRUE(vsp::net::testing::WireSend(
                    tap, PatternFrame(kGuestMac, kHostMac, size))
                    .ok())
        << size;
  }
  ASSERT_TRUE(vm.WaitFor("network: rx done " + count + " frames, 0 errors"))
      << vm.Console();
  ASSERT_TRUE(vm.WaitFor("network: done, 0 errors")) << vm.Console();
  const hvstack::internal::WorkerStatus status = vm.Status();
  ASSERT_EQ(status.nics_size(), 1);
  const auto& nic = status.nics(0);
  EXPECT_EQ(nic.from_guest_packets(), sizes.size());
  EXPECT_EQ(nic.from_guest_drops(), 0u);
  EXPECT_GE(nic.to_guest_packets(), sizes.size());
  EXPECT_EQ(nic.protocol_errors(), 0u);
  std::cout << "jumbo nic0 status: " << nic.ShortDebugString() << std::endl;
}

TEST_F(VmwpNetworkTest, TwoVmsOnOneBridgeExchangeFrames) {
  ASSERT_TRUE(vsp::net::testing::CreateBridge("vbr0").ok());
  TestTap tap_a = Tap("vtapa"), tap_b = Tap("vtapb");
  ASSERT_TRUE(tap_a.fd.valid() && tap_b.fd.valid());
  ASSERT_TRUE(vsp::net::testing::AddToBridge("vbr0", "vtapa").ok());
  ASSERT_TRUE(vsp::net::testing::AddToBridge("vbr0", "vtapb").ok());
  constexpr uint8_t kMacA[6] = {0x02, 0, 0, 0, 0xa, 1};
  constexpr uint8_t kMacB[6] = {0x02, 0, 0, 0, 0xb, 1};
  // B receives first, then A sends every size (broadcast: the bridge floods
  // it to B). Then the other way round (B waits 2 s first, so A is ready).
  Worker b("net-b", "phases=rwt");
  b.AddNic(0, kMacB, tap_b, true);
  Worker a("net-a", "phases=tr");
  a.AddNic(0, kMacA, tap_a, true);
  ASSERT_NO_FATAL_FAILURE(b.Start());
  ASSERT_TRUE(b.WaitFor("network: rx ready")) << b.Console();
  ASSERT_NO_FATAL_FAILURE(a.Start());
  ASSERT_TRUE(a.WaitFor("network: tx done 1455 frames, 0 errors"))
      << a.Console();
  ASSERT_TRUE(b.WaitFor("network: rx done 1455 frames, 0 errors"))
      << b.Console();
  // A now waits for frames; B sends.
  ASSERT_TRUE(a.WaitFor("network: rx ready")) << a.Console();
  ASSERT_TRUE(b.WaitFor("network: tx done 1455 frames, 0 errors"))
      << b.Console();
  ASSERT_TRUE(a.WaitFor("network: rx done 1455 frames, 0 errors"))
      << a.Console();
  ASSERT_TRUE(a.WaitFor("network: done, 0 errors"));
  ASSERT_TRUE(b.WaitFor("network: done, 0 errors"));
  EXPECT_TRUE(a.Wait().has_value());
  EXPECT_TRUE(b.Wait().has_value());
}

// A hostile netvsc (//guest:hostile_network): buffers outside RAM or too
// small, sections out of range, oversized frames, stray completions, unknown
// NVSP messages, RNDIS requests pointing outside themselves, then a flood
// while the TAP interface is down. Each abuse gets an error status; nic0 and
// the second adapter keep working and the worker stays up to the guest's
// power-off.
TEST_F(VmwpNetworkTest, HostileGuestGetsErrorsAndEverythingKeepsWorking) {
  TestTap tap0 = Tap("vtaph0"), tap1 = Tap("vtaph1");
  ASSERT_TRUE(tap0.fd.valid() && tap1.fd.valid());
  constexpr uint8_t kMac1[6] = {0x02, 0, 0, 0, 0, 0x02};
  Worker vm("net-hostile", "", "guest/hostile_network.elf");
  vm.AddNic(0, kGuestMac, tap0, true);
  vm.AddNic(1, kMac1, tap1, true);
  ASSERT_NO_FATAL_FAILURE(vm.Start());
  ASSERT_TRUE(vm.WaitFor("hostile-net: flood ready")) << vm.Console();
  // The worker's writes to nic0's TAP fail (EIO) while it is down: frames are
  // dropped and still completed to the guest.
  ASSERT_EQ(std::system("ip link set dev vtaph0 down"), 0);
  ASSERT_TRUE(vm.WaitFor("hostile-net: flood: 2000 sent")) << vm.Console();
  // The counters while the guest waits 3 s after its flood (it powers off
  // soon after).
  const hvstack::internal::WorkerStatus status = vm.Status();
  ASSERT_EQ(std::system("ip link set dev vtaph0 up"), 0);
  EXPECT_TRUE(vm.WaitFor("hostile-net: flood: 2000 sent, 2000 completed",
                         absl::Seconds(1)))
      << vm.Console();
  ASSERT_EQ(status.nics_size(), 2);
  EXPECT_GT(status.nics(0).protocol_errors(), 0u);
  EXPECT_GT(status.nics(0).from_guest_drops(), 0u);
  EXPECT_EQ(status.nics(1).protocol_errors(), 0u);
  std::cout << "nic0 after the abuse: " << status.nics(0).ShortDebugString()
            << std::endl;
  // nic1 sends one frame and waits for one: send it back.
  auto sent =
      vsp::net::testing::WireReceive(tap1, kEtherType, absl::Minutes(5));
  ASSERT_TRUE(sent.has_value()) << vm.Console();
  ASSERT_EQ(sent->size(), 200u);
  std::vector<uint8_t> reply = *sent;
  std::memcpy(reply.data(), kMac1, 6);
  std::memcpy(reply.data() + 6, kHostMac, 6);
  ASSERT_TRUE(vsp::net::testing::WireSend(tap1, reply).ok());
  ASSERT_TRUE(vm.WaitFor("hostile-net: nic1 ok")) << vm.Console();
  ASSERT_TRUE(vm.WaitFor("hostile-net: nic0 still works")) << vm.Console();
  ASSERT_TRUE(vm.WaitFor("hostile-net: done, 0 unexpected")) << vm.Console();
  auto report = vm.Wait();
  ASSERT_TRUE(report.has_value());
  EXPECT_EQ(report->reason(), WorkerExitReport::GUEST_POWER_OFF);
}

}  // namespace
