// A real TAP device, created by the test in a network namespace of its own
// (the host's network is never touched): TapDevice and the whole adapter
// move frames of every size both ways, with and without the virtio-net
// header, checked byte for byte on the far side through an AF_PACKET socket
// bound to the TAP interface. Skips without CAP_NET_ADMIN or /dev/net/tun.
#include "vmwp/vsp/net/tap_device.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/if_ether.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "vmwp/vmbus/server.h"
#include "vmwp/vmbus/test_fake_guest.h"
#include "vmwp/vsp/net/net_adapter.h"
#include "vmwp/vsp/net/test_netvsc_guest.h"

namespace vsp::net {
namespace {

constexpr uint16_t kEtherType = 0x88B5;  // IEEE local experimental
constexpr MacAddress kGuestMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};

std::string skip_reason;

// The whole test binary moves into a fresh network namespace first.
class NetnsEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (::unshare(CLONE_NEWNET) != 0) {
      skip_reason = std::string("cannot create a network namespace (") +
                    strerror(errno) + "): needs CAP_NET_ADMIN";
    } else if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
      skip_reason = "/dev/net/tun is missing";
    }
  }
};
const auto* const env =
    ::testing::AddGlobalTestEnvironment(new NetnsEnvironment);

std::vector<uint8_t> Frame(size_t size, uint32_t seed,
                           const uint8_t* dst = kGuestMac.data()) {
  std::vector<uint8_t> f(size);
  std::memcpy(f.data(), dst, 6);
  const uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x99};
  std::memcpy(f.data() + 6, src, 6);
  f[12] = kEtherType >> 8;
  f[13] = kEtherType & 0xFF;
  for (size_t i = 14; i < size; ++i)
    f[i] = static_cast<uint8_t>(seed * 13 + i * 7 + (i >> 8));
  return f;
}

struct Tap {
  base::ScopedFd fd;
  base::ScopedFd packet;  // AF_PACKET on the interface: the "wire"
  int ifindex = 0;
};

// nvtapN, up, with an AF_PACKET socket bound to it.
std::optional<Tap> MakeTap(const std::string& name, bool vnet_header) {
  Tap t;
  t.fd.reset(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!t.fd.valid()) return std::nullopt;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_header ? IFF_VNET_HDR : 0);
  if (::ioctl(t.fd.get(), TUNSETIFF, &ifr) != 0) return std::nullopt;
  // What vmms does: no offloads, so the kernel hands over complete frames.
  if (vnet_header && ::ioctl(t.fd.get(), TUNSETOFFLOAD, 0) != 0)
    return std::nullopt;
  base::ScopedFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) return std::nullopt;
  ifr.ifr_flags |= IFF_UP;
  if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0) return std::nullopt;
  t.ifindex = static_cast<int>(::if_nametoindex(name.c_str()));
  t.packet.reset(::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC,
                          htons(ETH_P_ALL)));
  sockaddr_ll ll{};
  ll.sll_family = AF_PACKET;
  ll.sll_protocol = htons(ETH_P_ALL);
  ll.sll_ifindex = t.ifindex;
  if (::bind(t.packet.get(), reinterpret_cast<sockaddr*>(&ll), sizeof(ll)) != 0)
    return std::nullopt;
  return t;
}

// The next frame of ours that arrived on the interface from the TAP fd
// (skipping the kernel's own traffic and what the socket sent itself).
std::optional<std::vector<uint8_t>> WireReceive(Tap& t) {
  uint8_t buf[16384];
  for (int tries = 0; tries < 2000; ++tries) {
    sockaddr_ll from{};
    socklen_t len = sizeof(from);
    ssize_t n = ::recvfrom(t.packet.get(), buf, sizeof(buf), 0,
                           reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) {
      ::usleep(500);
      continue;
    }
    if (from.sll_pkttype == PACKET_OUTGOING || n < 14) continue;
    if (((buf[12] << 8) | buf[13]) != kEtherType) continue;
    return std::vector<uint8_t>(buf, buf + n);
  }
  return std::nullopt;
}

void WireSend(Tap& t, const std::vector<uint8_t>& frame) {
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = t.ifindex;
  to.sll_halen = 6;
  std::memcpy(to.sll_addr, frame.data(), 6);
  ASSERT_EQ(::sendto(t.packet.get(), frame.data(), frame.size(), 0,
                     reinterpret_cast<sockaddr*>(&to), sizeof(to)),
            static_cast<ssize_t>(frame.size()));
}

class TapDeviceTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (!skip_reason.empty()) GTEST_SKIP() << skip_reason;
    static int n = 0;
    auto t = MakeTap("nvtap" + std::to_string(n++), GetParam());
    ASSERT_TRUE(t.has_value()) << "TAP set-up: " << strerror(errno);
    tap_ = std::move(*t);
  }
  Tap tap_;
};

TEST_P(TapDeviceTest, FramesOfEverySizeBothWays) {
  TapDevice device(base::ScopedFd(::dup(tap_.fd.get())), GetParam());
  std::vector<uint8_t> buffer(65536);
  for (uint32_t size = 60; size <= 1514; ++size) {
    const auto out = Frame(size, size);
    const std::span<const uint8_t> pieces[] = {
        std::span<const uint8_t>(out).first(20),
        std::span<const uint8_t>(out).subspan(20)};
    ASSERT_TRUE(device.Write(pieces).ok()) << size;
    auto got = WireReceive(tap_);
    ASSERT_TRUE(got.has_value()) << size;
    ASSERT_EQ(*got, out) << "to the wire, " << size << " bytes";

    const auto in = Frame(size, size + 1);
    WireSend(tap_, in);
    absl::StatusOr<size_t> n = 0;
    for (int i = 0; i < 2000; ++i) {
      n = device.Read(buffer);
      ASSERT_TRUE(n.ok()) << n.status();
      if (*n == 0) {
        ::usleep(500);
        continue;
      }
      if (*n >= 14 && ((buffer[12] << 8) | buffer[13]) == kEtherType) break;
    }
    ASSERT_EQ(*n, in.size()) << size;
    ASSERT_EQ(0, std::memcmp(buffer.data(), in.data(), in.size()))
        << "from the wire, " << size << " bytes";
  }
}

INSTANTIATE_TEST_SUITE_P(VnetHeader, TapDeviceTest, ::testing::Bool());

TEST(ChecksumTest, CompletesAPartialChecksum) {
  // RFC 1071's example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2 (folded), so
  // the checksum is 220d; here after 20 bytes of header, the field last.
  std::vector<uint8_t> frame(20, 0xAA);
  for (uint8_t b : {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7, 0, 0})
    frame.push_back(b);
  ASSERT_TRUE(CompleteChecksum(frame, 20, 8));
  EXPECT_EQ(frame[28], 0x22);
  EXPECT_EQ(frame[29], 0x0d);
  // A seed in the field (the pseudo-header sum the kernel leaves) counts.
  frame[28] = 0x00;
  frame[29] = 0x01;
  ASSERT_TRUE(CompleteChecksum(frame, 20, 8));
  EXPECT_EQ((frame[28] << 8) | frame[29], 0x220c);
  // An odd length pads with a zero byte.
  std::vector<uint8_t> odd = {0, 0, 0x01};
  ASSERT_TRUE(CompleteChecksum(odd, 0, 0));
  EXPECT_EQ((odd[0] << 8) | odd[1], 0xFEFF);
  EXPECT_FALSE(CompleteChecksum(frame, 30, 0));
  EXPECT_FALSE(CompleteChecksum(frame, 20, 9));
}

// The whole adapter on a real TAP device, the guest being Linux's netvsc
// test peer.
class TapAdapterTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (!skip_reason.empty()) GTEST_SKIP() << skip_reason;
    static int n = 0;
    auto t = MakeTap("nvatap" + std::to_string(n++), GetParam());
    ASSERT_TRUE(t.has_value()) << "TAP set-up: " << strerror(errno);
    tap_ = std::move(*t);
    NetAdapter::Config config;
    config.mac = kGuestMac;
    config.tap = base::ScopedFd(::dup(tap_.fd.get()));
    config.vnet_header = GetParam();
    config.name = "nic0 (real TAP)";
    auto adapter = NetAdapter::Create(std::move(config), {.manual = true});
    ASSERT_TRUE(adapter.ok()) << adapter.status();
    adapter_ = *std::move(adapter);
    server_ = std::make_unique<vmbus::VmbusServer>(
        guest_.memory, guest_, vmbus::VmbusServer::Options{.vp_count = 1});
    guest_.server = server_.get();
    ASSERT_TRUE(server_->AddVsp(adapter_.get()).ok());
    netvsc_ = std::make_unique<testing::NetvscGuest>(
        guest_, *server_, [this] { adapter_->Poll(); });
    ASSERT_TRUE(netvsc_->BringUp());
    netvsc_->ProcessInbound();
  }
  void TearDown() override {
    netvsc_.reset();
    server_.reset();
    adapter_.reset();
  }
  vmbus::testing::FakeGuest guest_{4096};
  Tap tap_;
  std::unique_ptr<NetAdapter> adapter_;
  std::unique_ptr<vmbus::VmbusServer> server_;
  std::unique_ptr<testing::NetvscGuest> netvsc_;
};

TEST_P(TapAdapterTest, EveryFrameSizeBothWaysByteExact) {
  for (uint32_t size = 60; size <= 1514; ++size) {
    const auto out = Frame(size, size);
    netvsc_->SendInSection({testing::NetvscGuest::PacketMessage(out)},
                           size % 8);
    auto got = WireReceive(tap_);
    ASSERT_TRUE(got.has_value()) << size;
    ASSERT_EQ(*got, out) << "guest -> wire, " << size << " bytes";

    const auto in = Frame(size, size * 3);
    WireSend(tap_, in);
    for (int i = 0; i < 2000; ++i) {
      adapter_->Poll();
      netvsc_->ProcessInbound();
      while (!netvsc_->frames.empty() &&
             ((netvsc_->frames.front()[12] << 8) |
              netvsc_->frames.front()[13]) != kEtherType) {
        netvsc_->frames.pop_front();  // the kernel's own (IPv6 RS, ...)
      }
      if (!netvsc_->frames.empty()) break;
      ::usleep(500);
    }
    ASSERT_FALSE(netvsc_->frames.empty()) << size;
    ASSERT_EQ(netvsc_->frames.front(), in) << "wire -> guest, " << size;
    netvsc_->frames.clear();
  }
  EXPECT_EQ(adapter_->counters().FromGuestDrops(), 0u);
  EXPECT_EQ(adapter_->counters().protocol_errors.load(), 0u);
}

INSTANTIATE_TEST_SUITE_P(VnetHeader, TapAdapterTest, ::testing::Bool());

}  // namespace
}  // namespace vsp::net
