// A real TAP device, created by the test in a network namespace of its own
// (the host's network is never touched): TapDevice and the whole adapter
// move frames of every size both ways, with and without the virtio-net
// header, checked byte for byte on the far side through an AF_PACKET socket
// bound to the TAP interface. Skips without CAP_NET_ADMIN or /dev/net/tun.
#include "vmwp/vsp/net/tap_device.h"

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
#include "vmwp/vsp/net/test_tap.h"

namespace vsp::net {
namespace {

constexpr uint16_t kEtherType = 0x88B5;  // IEEE local experimental
constexpr MacAddress kGuestMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};

std::string skip_reason;

// The whole test binary moves into a fresh network namespace first.
class NetnsEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { skip_reason = testing::EnterNewNetworkNamespace(); }
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

using testing::TestTap;

std::optional<std::vector<uint8_t>> WireReceive(TestTap& t) {
  return testing::WireReceive(t, kEtherType, absl::Seconds(2));
}
void WireSend(TestTap& t, const std::vector<uint8_t>& frame) {
  ASSERT_TRUE(testing::WireSend(t, frame).ok());
}

class TapDeviceTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (!skip_reason.empty()) GTEST_SKIP() << skip_reason;
    static int n = 0;
    auto t = testing::CreateTap("nvtap" + std::to_string(n++), GetParam());
    ASSERT_TRUE(t.ok()) << t.status();
    tap_ = *std::move(t);
  }
  TestTap tap_;
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
    auto t = testing::CreateTap("nvatap" + std::to_string(n++), GetParam());
    ASSERT_TRUE(t.ok()) << t.status();
    tap_ = *std::move(t);
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
  TestTap tap_;
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
