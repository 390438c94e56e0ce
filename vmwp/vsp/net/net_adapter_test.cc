// netvsp against a guest that does what Linux's hv_netvsc does
// (test_netvsc_guest.h), over the real VMBus server, rings and GPADLs, with
// a SOCK_SEQPACKET socketpair standing in for the TAP device (the same
// frame-per-read/write semantics; tap_test uses a real TAP device). The
// adapter runs in manual mode: the test pumps it after every guest action,
// so each step is deterministic; AdapterThreadTest runs the device thread.
#include "vmwp/vsp/net/net_adapter.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "vmwp/vmbus/server.h"
#include "vmwp/vmbus/test_fake_guest.h"
#include "vmwp/vsp/net/test_netvsc_guest.h"

namespace vsp::net {
namespace {

using testing::NetvscGuest;
using vmbus::testing::FakeGuest;

constexpr MacAddress kMac = {0x00, 0x15, 0x5d, 0x00, 0x00, 0x01};
constexpr uint64_t kRamPages = 4096;  // 16 MiB

std::vector<uint8_t> Frame(size_t size, uint32_t seed,
                           const uint8_t* dst = kMac.data()) {
  std::vector<uint8_t> f(size);
  std::memcpy(f.data(), dst, 6);
  const uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x99};
  std::memcpy(f.data() + 6, src, 6);
  f[12] = 0x88;  // a local experimental ethertype
  f[13] = 0xB5;
  for (size_t i = 14; i < size; ++i)
    f[i] = static_cast<uint8_t>(seed * 31 + i * 7 + (i >> 8));
  return f;
}

class NetAdapterTest : public ::testing::Test {
 protected:
  NetAdapterTest() : guest_(kRamPages) {}

  void SetUp() override { Build({}); }

  void Build(NetvspSession::Limits limits, uint32_t mtu = 1500) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
    host_end_.reset(sv[1]);
    NetAdapter::Config config;
    config.index = 0;
    config.mac = kMac;
    config.mtu = mtu;
    config.tap = base::ScopedFd(sv[0]);
    config.instance = vmbus::Guid::FromFields(0x68767374, 0x6e69, 0, {});
    config.name = "nic0 (test)";
    auto adapter = NetAdapter::Create(std::move(config),
                                      {.limits = limits, .manual = true});
    ASSERT_TRUE(adapter.ok()) << adapter.status();
    adapter_ = *std::move(adapter);
    server_ = std::make_unique<vmbus::VmbusServer>(
        guest_.memory, guest_, vmbus::VmbusServer::Options{.vp_count = 1});
    guest_.server = server_.get();
    ASSERT_TRUE(server_->AddVsp(adapter_.get()).ok());
    netvsc_ = std::make_unique<NetvscGuest>(guest_, *server_,
                                            [this] { adapter_->Poll(); });
  }

  void TearDown() override {
    server_.reset();  // closes the channel (OnClose) before the adapter goes
    adapter_.reset();
  }

  // Frames the adapter wrote to the "TAP device".
  std::vector<std::vector<uint8_t>> HostFrames() {
    std::vector<std::vector<uint8_t>> out;
    uint8_t buf[16384];
    for (;;) {
      ssize_t n = ::recv(host_end_.get(), buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0) break;
      out.emplace_back(buf, buf + n);
    }
    return out;
  }
  void HostSend(const std::vector<uint8_t>& frame) {
    ASSERT_EQ(::send(host_end_.get(), frame.data(), frame.size(), 0),
              static_cast<ssize_t>(frame.size()));
  }
  const NicCounters& counters() { return adapter_->counters(); }

  FakeGuest guest_;
  base::ScopedFd host_end_;
  std::unique_ptr<NetAdapter> adapter_;
  std::unique_ptr<vmbus::VmbusServer> server_;
  std::unique_ptr<NetvscGuest> netvsc_;
};

TEST_F(NetAdapterTest, LinuxBringUpSequence) {
  ASSERT_TRUE(netvsc_->Open());
  EXPECT_EQ(netvsc_->Negotiate(), kNvspVersion61);
  EXPECT_EQ(counters().nvsp_version.load(), kNvspVersion61);
  auto rx = netvsc_->LendReceiveBuffer();
  ASSERT_TRUE(rx.has_value());
  EXPECT_EQ(rx->status, kNvspStatusSuccess);
  // What netvsc_init_buf checks: one section at offset 0, section size at
  // least ETH_MIN_MTU, size * count within the buffer.
  EXPECT_EQ(rx->section_count, 1u);
  EXPECT_EQ(rx->sections[0].offset, 0u);
  EXPECT_EQ(rx->sections[0].sub_allocation_size, 1728u);
  EXPECT_LE(uint64_t{rx->sections[0].sub_allocation_size} *
                rx->sections[0].sub_allocation_count,
            256u * 4096);
  EXPECT_EQ(rx->sections[0].sub_allocation_count, 256u * 4096 / 1728);
  auto tx = netvsc_->LendSendBuffer();
  ASSERT_TRUE(tx.has_value());
  EXPECT_EQ(tx->status, kNvspStatusSuccess);
  EXPECT_EQ(tx->section_size, 6144u);
  ASSERT_TRUE(netvsc_->BringUpRndis());
  EXPECT_EQ(netvsc_->max_packets, 8u);
  EXPECT_EQ(netvsc_->alignment, 8u);
  EXPECT_EQ(netvsc_->mtu, 1500u);
  EXPECT_EQ(0, std::memcmp(netvsc_->mac, kMac.data(), 6));
  EXPECT_TRUE(netvsc_->link_up);
  // Opening the data path brought a link-up indication.
  netvsc_->ProcessInbound();
  EXPECT_EQ(netvsc_->indications,
            std::vector<uint32_t>{kRndisStatusMediaConnect});
  EXPECT_TRUE(counters().guest_ready.load());
  EXPECT_EQ(counters().packet_filter.load(), kPacketTypeBroadcast |
                                                 kPacketTypeAllMulticast |
                                                 kPacketTypeDirected);
  EXPECT_EQ(counters().protocol_errors.load(), 0u);
  EXPECT_EQ(netvsc_->bad_receives, 0u);
}

TEST_F(NetAdapterTest, OlderGuestsNegotiateTheirVersion) {
  ASSERT_TRUE(netvsc_->Open());
  // A guest that only knows up to NVSP 4 steps down to it; a version
  // nobody knows is refused and the guest moves on.
  EXPECT_EQ(netvsc_->Negotiate({0x70000, kNvspVersion4, kNvspVersion2}),
            kNvspVersion4);
  ASSERT_TRUE(netvsc_->LendReceiveBuffer());
  ASSERT_TRUE(netvsc_->LendSendBuffer());
  ASSERT_TRUE(netvsc_->BringUpRndis());
  EXPECT_EQ(counters().protocol_errors.load(), 0u);
}

TEST_F(NetAdapterTest, Nvsp1GuestWorks) {
  ASSERT_TRUE(netvsc_->Open());
  EXPECT_EQ(netvsc_->Negotiate({kNvspVersion1}), kNvspVersion1);
  ASSERT_TRUE(netvsc_->LendReceiveBuffer());
  ASSERT_TRUE(netvsc_->LendSendBuffer());
  ASSERT_TRUE(netvsc_->BringUpRndis());
  auto f = Frame(100, 1);
  netvsc_->SendInSection({NetvscGuest::PacketMessage(f)});
  EXPECT_EQ(HostFrames(), std::vector<std::vector<uint8_t>>{f});
}

TEST_F(NetAdapterTest, EveryFrameSizeBothWaysByteExact) {
  ASSERT_TRUE(netvsc_->BringUp());
  netvsc_->ProcessInbound();
  // Guest -> host: in send sections (what netvsc does below the section
  // size) ...
  for (uint32_t size = 60; size <= 1514; ++size) {
    const auto f = Frame(size, size);
    const uint64_t id =
        netvsc_->SendInSection({NetvscGuest::PacketMessage(f)}, size % 8);
    netvsc_->ProcessInbound();
    ASSERT_EQ(netvsc_->RndisCompletionStatus(id), kNvspStatusSuccess) << size;
    auto got = HostFrames();
    ASSERT_EQ(got.size(), 1u) << size;
    ASSERT_EQ(got[0], f) << "frame of " << size << " bytes";
  }
  // ... and as GPA-direct ranges crossing pages.
  for (uint32_t size : {60u, 61u, 1000u, 1513u, 1514u}) {
    const auto f = Frame(size, size + 7);
    const uint64_t id = netvsc_->SendRndisGpaDirect(
        NetvscGuest::PacketMessage(f), kRndisChannelData, kNoSendSection, 0,
        4000, 700);
    netvsc_->ProcessInbound();
    ASSERT_EQ(netvsc_->RndisCompletionStatus(id), kNvspStatusSuccess);
    auto got = HostFrames();
    ASSERT_EQ(got.size(), 1u);
    ASSERT_EQ(got[0], f) << "GPA-direct frame of " << size << " bytes";
  }
  // Host -> guest.
  for (uint32_t size = 60; size <= 1514; ++size) {
    const auto f = Frame(size, size * 3);
    HostSend(f);
    adapter_->Poll();
    netvsc_->ProcessInbound();
    ASSERT_EQ(netvsc_->frames.size(), 1u) << size;
    ASSERT_EQ(netvsc_->frames.front(), f) << "frame of " << size << " bytes";
    netvsc_->frames.clear();
  }
  EXPECT_EQ(netvsc_->bad_receives, 0u);
  EXPECT_EQ(counters().from_guest_packets.load(), 1455u + 5);
  EXPECT_EQ(counters().to_guest_packets.load(), 1455u);
  EXPECT_EQ(counters().FromGuestDrops(), 0u);
  EXPECT_EQ(counters().ToGuestDrops(), 0u);
  EXPECT_EQ(counters().protocol_errors.load(), 0u);
}

TEST_F(NetAdapterTest, BatchesAndPartialCopiesAsNetvscSendMakesThem) {
  ASSERT_TRUE(netvsc_->BringUp());
  // Eight frames in one section, each padded to the RNDIS alignment.
  std::vector<std::vector<uint8_t>> frames, messages;
  for (uint32_t i = 0; i < 8; ++i) {
    frames.push_back(Frame(61 + i * 50, i));
    messages.push_back(NetvscGuest::PacketMessage(frames.back()));
  }
  const uint64_t id = netvsc_->SendInSection(messages, 3);
  netvsc_->ProcessInbound();
  EXPECT_EQ(netvsc_->RndisCompletionStatus(id), kNvspStatusSuccess);
  EXPECT_EQ(HostFrames(), frames);
  // cp_partial: a batched frame plus the next frame's RNDIS header in the
  // section, that frame's data in GPA-direct ranges.
  const auto first = Frame(200, 9), second = Frame(1400, 10);
  std::vector<uint8_t> head = NetvscGuest::PacketMessage(first);
  head.resize((head.size() + 7) & ~7u, 0);
  uint32_t padded = static_cast<uint32_t>(head.size());
  std::memcpy(head.data() + 4, &padded, 4);
  std::vector<uint8_t> second_msg = NetvscGuest::PacketMessage(second);
  head.insert(head.end(), second_msg.begin(),
              second_msg.begin() + kRndisPacketHeaderSize);
  std::memcpy(guest_.memory.base() + 1024 * 4096 + 5 * 6144, head.data(),
              head.size());
  const uint64_t partial = netvsc_->SendRndisGpaDirect(
      std::span<const uint8_t>(second), kRndisChannelData, 5,
      static_cast<uint32_t>(head.size()));
  netvsc_->ProcessInbound();
  EXPECT_EQ(netvsc_->RndisCompletionStatus(partial), kNvspStatusSuccess);
  auto got = HostFrames();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], first);
  EXPECT_EQ(got[1], second);
}

TEST_F(NetAdapterTest, VlanPerPacketInfoBecomesATag) {
  ASSERT_TRUE(netvsc_->BringUp());
  const auto f = Frame(1514, 5);
  // vlan id 42, priority 5: pri bits 0-2, vlan id bits 4-15.
  netvsc_->SendInSection({NetvscGuest::PacketMessage(f, (42u << 4) | 5u)});
  auto got = HostFrames();
  ASSERT_EQ(got.size(), 1u);
  ASSERT_EQ(got[0].size(), f.size() + 4);
  EXPECT_EQ(0, std::memcmp(got[0].data(), f.data(), 12));
  EXPECT_EQ(got[0][12], 0x81);
  EXPECT_EQ(got[0][13], 0x00);
  EXPECT_EQ(got[0][14], (5 << 5));  // PCP 5, DEI 0, VID high bits 0
  EXPECT_EQ(got[0][15], 42);
  EXPECT_EQ(0, std::memcmp(got[0].data() + 16, f.data() + 12, f.size() - 12));
}

TEST_F(NetAdapterTest, ReceiveFilterAndReadiness) {
  ASSERT_TRUE(netvsc_->Open());
  // Before the guest is ready, frames are dropped and counted.
  HostSend(Frame(100, 1));
  adapter_->Poll();
  EXPECT_EQ(counters().drop(Drop::kToGuestNotReady), 1u);
  ASSERT_TRUE(netvsc_->Negotiate());
  ASSERT_TRUE(netvsc_->LendReceiveBuffer());
  ASSERT_TRUE(netvsc_->LendSendBuffer());
  ASSERT_TRUE(netvsc_->BringUpRndis());
  netvsc_->ProcessInbound();
  const uint8_t other[6] = {0x00, 0x15, 0x5d, 0x00, 0x00, 0x02};
  const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  HostSend(Frame(100, 2, other));
  HostSend(Frame(100, 3, bcast));
  HostSend(Frame(100, 4));
  adapter_->Poll();
  netvsc_->ProcessInbound();
  ASSERT_EQ(netvsc_->frames.size(), 2u);
  EXPECT_EQ(netvsc_->frames[0], Frame(100, 3, bcast));
  EXPECT_EQ(counters().note(Note::kToGuestFiltered), 1u);
  // Promiscuous takes everything; filter 0 (interface down) nothing.
  ASSERT_TRUE(netvsc_->SetFilter(kPacketTypePromiscuous));
  HostSend(Frame(100, 5, other));
  adapter_->Poll();
  netvsc_->ProcessInbound();
  EXPECT_EQ(netvsc_->frames.size(), 3u);
  ASSERT_TRUE(netvsc_->SetFilter(0));
  HostSend(Frame(100, 6));
  adapter_->Poll();
  EXPECT_EQ(counters().drop(Drop::kToGuestNotReady), 2u);
  // Frames over the MTU from the host are dropped.
  ASSERT_TRUE(netvsc_->SetFilter(kPacketTypeDirected));
  HostSend(Frame(1519, 7));
  adapter_->Poll();
  EXPECT_EQ(counters().drop(Drop::kToGuestBadFrame), 1u);
}

TEST_F(NetAdapterTest, LinkDownAndUp) {
  ASSERT_TRUE(netvsc_->BringUp());
  netvsc_->ProcessInbound();
  netvsc_->indications.clear();
  adapter_->SetLink(false);
  adapter_->Poll();
  netvsc_->ProcessInbound();
  EXPECT_EQ(netvsc_->indications,
            std::vector<uint32_t>{kRndisStatusMediaDisconnect});
  EXPECT_FALSE(counters().link_up.load());
  auto state = netvsc_->Query(kOidGenMediaConnectStatus);
  ASSERT_TRUE(state.has_value());
  uint32_t v;
  std::memcpy(&v, state->second.data(), 4);
  EXPECT_EQ(v, kMediaStateDisconnected);
  // While down nothing passes, either way.
  netvsc_->SendInSection({NetvscGuest::PacketMessage(Frame(100, 1))});
  HostSend(Frame(100, 2));
  adapter_->Poll();
  netvsc_->ProcessInbound();
  EXPECT_TRUE(HostFrames().empty());
  EXPECT_TRUE(netvsc_->frames.empty());
  EXPECT_EQ(counters().drop(Drop::kFromGuestLinkDown), 1u);
  EXPECT_EQ(counters().drop(Drop::kToGuestLinkDown), 1u);
  adapter_->SetLink(true);
  adapter_->Poll();
  netvsc_->ProcessInbound();
  EXPECT_EQ(netvsc_->indications.back(), kRndisStatusMediaConnect);
  HostSend(Frame(100, 3));
  adapter_->Poll();
  netvsc_->ProcessInbound();
  EXPECT_EQ(netvsc_->frames.size(), 1u);
}

TEST_F(NetAdapterTest, ControlMessagesAndKeepalive) {
  ASSERT_TRUE(netvsc_->BringUp());
  std::vector<uint8_t> keep(12);
  RndisHeader h{kRndisMsgKeepalive, 12};
  std::memcpy(keep.data(), &h, 8);
  uint32_t id = 0x777;
  std::memcpy(keep.data() + 8, &id, 4);
  auto r = netvsc_->Rndis(keep);
  ASSERT_TRUE(r.has_value());
  RndisKeepaliveComplete kc;
  std::memcpy(&kc, r->data() + 8, sizeof(kc));
  EXPECT_EQ(kc.request_id, 0x777u);
  std::vector<uint8_t> reset(12, 0);
  h = {kRndisMsgReset, 12};
  std::memcpy(reset.data(), &h, 8);
  r = netvsc_->Rndis(reset);
  ASSERT_TRUE(r.has_value());
  RndisHeader rh;
  std::memcpy(&rh, r->data(), 8);
  EXPECT_EQ(rh.type, kRndisMsgResetComplete);
  // HALT: no answer, the device stops taking data.
  std::vector<uint8_t> halt(12, 0);
  h = {kRndisMsgHalt, 12};
  std::memcpy(halt.data(), &h, 8);
  netvsc_->Rndis(halt);
  EXPECT_FALSE(counters().guest_ready.load());
  netvsc_->SendInSection({NetvscGuest::PacketMessage(Frame(100, 1))});
  EXPECT_TRUE(HostFrames().empty());
  EXPECT_EQ(counters().drop(Drop::kFromGuestNotReady), 1u);
}

// ------------------------------------------------------------ hostile

TEST_F(NetAdapterTest, BadRndisLengthsAndOffsetsFailThePacket) {
  ASSERT_TRUE(netvsc_->BringUp());
  const auto f = Frame(100, 1);
  struct Case {
    const char* what;
    size_t offset;  // into the message
    uint32_t value;
  } cases[] = {
      {"msg_len 0", 4, 0},
      {"msg_len past the section", 4, 5000},
      {"data offset past the end", 8, 4000},
      {"data length past the end", 12, 200},
      {"data offset inside the header", 8, 4},
      {"ppi offset past the end", 28, 900},
      {"ppi length wraps", 32, 0xFFFFFFF0},
  };
  uint64_t errors = counters().protocol_errors.load();
  for (const Case& c : cases) {
    std::vector<uint8_t> m = NetvscGuest::PacketMessage(f, 1u << 4);
    std::memcpy(m.data() + c.offset, &c.value, 4);
    const uint64_t id = netvsc_->SendInSection({m});
    netvsc_->ProcessInbound();
    EXPECT_EQ(netvsc_->RndisCompletionStatus(id), kNvspStatusInvalidRndisPacket)
        << c.what;
    EXPECT_GT(counters().protocol_errors.load(), errors) << c.what;
    errors = counters().protocol_errors.load();
  }
  EXPECT_TRUE(HostFrames().empty());
  // A frame shorter than an Ethernet header.
  const uint64_t id =
      netvsc_->SendInSection({NetvscGuest::PacketMessage(Frame(13, 1))});
  netvsc_->ProcessInbound();
  EXPECT_EQ(netvsc_->RndisCompletionStatus(id), kNvspStatusInvalidRndisPacket);
  // The adapter still works.
  netvsc_->SendInSection({NetvscGuest::PacketMessage(f)});
  EXPECT_EQ(HostFrames().size(), 1u);
  EXPECT_GE(counters().drop(Drop::kFromGuestMalformed), 8u);
}

TEST_F(NetAdapterTest, SendSectionsOutOfRange) {
  ASSERT_TRUE(netvsc_->BringUp());
  netvsc_->ProcessInbound();
  const uint32_t count = netvsc_->send_section_count;
  NvspMessage bad[] = {
      MakeNvsp(kNvspMsg1SendRndisPacket,
               Nvsp1SendRndisPacket{0, count, 100}),  // one past the end
      MakeNvsp(kNvspMsg1SendRndisPacket,
               Nvsp1SendRndisPacket{0, 0xFFFFFFFE, 100}),
      MakeNvsp(kNvspMsg1SendRndisPacket,
               Nvsp1SendRndisPacket{0, 0, 6145}),  // larger than a section
      MakeNvsp(kNvspMsg1SendRndisPacket, Nvsp1SendRndisPacket{0, 0, 0}),
      // No section and no GPA-direct ranges: nothing to send.
      MakeNvsp(kNvspMsg1SendRndisPacket,
               Nvsp1SendRndisPacket{0, kNoSendSection, 0}),
  };
  uint64_t id = 1000;
  for (const NvspMessage& m : bad) {
    netvsc_->Write(vmbus::kPacketDataInband,
                   vmbus::kPacketFlagCompletionRequested, id, {}, Bytes(m));
    netvsc_->ProcessInbound();
    EXPECT_EQ(netvsc_->RndisCompletionStatus(id), kNvspStatusFail) << id;
    ++id;
  }
  EXPECT_EQ(counters().protocol_errors.load(), 5u);
  // GPA-direct ranges outside RAM.
  std::vector<uint8_t> ext(24, 0);
  const uint32_t one = 1, len = 100;
  const uint64_t pfn = kRamPages + 5;
  std::memcpy(ext.data() + 4, &one, 4);
  std::memcpy(ext.data() + 8, &len, 4);
  std::memcpy(ext.data() + 16, &pfn, 8);
  NvspMessage m = MakeNvsp(kNvspMsg1SendRndisPacket,
                           Nvsp1SendRndisPacket{1, kNoSendSection, 0});
  netvsc_->Write(vmbus::kPacketDataUsingGpaDirect,
                 vmbus::kPacketFlagCompletionRequested, id, ext, Bytes(m));
  netvsc_->ProcessInbound();
  EXPECT_EQ(netvsc_->RndisCompletionStatus(id), kNvspStatusFail);
  EXPECT_TRUE(HostFrames().empty());
  // Still working.
  netvsc_->SendInSection({NetvscGuest::PacketMessage(Frame(100, 1))});
  EXPECT_EQ(HostFrames().size(), 1u);
}

TEST_F(NetAdapterTest, ReceiveBufferGpadlsOutsideRamOrTooSmall) {
  ASSERT_TRUE(netvsc_->Open());
  ASSERT_TRUE(netvsc_->Negotiate());
  // A GPADL that does not exist, the ring's GPADL, one too small.
  auto r = netvsc_->LendReceiveBuffer(0x5555, /*create_gpadl=*/false);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, kNvspStatusFail);
  r = netvsc_->LendReceiveBuffer(NetvscGuest::kRingGpadl, false);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, kNvspStatusFail);
  ASSERT_EQ(
      guest_.CreateGpadl(netvsc_->relid, 0x6000, FakeGuest::Pages(3000, 4))
          .creation_status,
      0u);
  r = netvsc_->LendReceiveBuffer(0x6000, false);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, kNvspStatusFail);
  // A GPADL outside RAM never gets created (the server refuses it).
  std::vector<uint64_t> outside = {kRamPages + 1, kRamPages + 2};
  EXPECT_NE(guest_.CreateGpadl(netvsc_->relid, 0x6001, outside).creation_status,
            0u);
  r = netvsc_->LendReceiveBuffer(0x6001, false);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, kNvspStatusFail);
  EXPECT_EQ(counters().protocol_errors.load(), 4u);
  // The right one still works, once.
  r = netvsc_->LendReceiveBuffer();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, kNvspStatusSuccess);
  r = netvsc_->LendReceiveBuffer(0x6000, false);
  EXPECT_EQ(r->status, kNvspStatusFail) << "a second receive buffer";
  // The receive buffer cannot double as the send buffer.
  auto s = netvsc_->LendSendBuffer(NetvscGuest::kReceiveGpadl, false);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->status, kNvspStatusFail);
}

TEST_F(NetAdapterTest, BeforeInitEverythingFails) {
  ASSERT_TRUE(netvsc_->Open());
  auto r = netvsc_->LendReceiveBuffer();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, kNvspStatusFail);
  const uint64_t id = netvsc_->SendRndisGpaDirect(
      NetvscGuest::PacketMessage(Frame(60, 1)), kRndisChannelData);
  netvsc_->ProcessInbound();
  EXPECT_EQ(netvsc_->RndisCompletionStatus(id), kNvspStatusFail);
  // A short and an unknown NVSP message.
  std::vector<uint8_t> tiny = {1, 0};
  netvsc_->Write(vmbus::kPacketDataInband, 0, 1, {}, tiny);
  std::vector<uint8_t> unknown(40, 0);
  unknown[0] = 200;
  netvsc_->Write(vmbus::kPacketDataInband, 0, 2, {}, unknown);
  EXPECT_GE(counters().protocol_errors.load(), 4u);
  EXPECT_EQ(netvsc_->Negotiate(), kNvspVersion61) << "still usable";
}

TEST_F(NetAdapterTest, OversizedFramesAreCountedDrops) {
  ASSERT_TRUE(netvsc_->BringUp());
  const uint64_t id = netvsc_->SendRndisGpaDirect(
      NetvscGuest::PacketMessage(Frame(1515, 1)), kRndisChannelData);
  netvsc_->ProcessInbound();
  EXPECT_EQ(netvsc_->RndisCompletionStatus(id), kNvspStatusSuccess);
  EXPECT_TRUE(HostFrames().empty());
  EXPECT_EQ(counters().drop(Drop::kFromGuestOversized), 1u);
  // An inline 802.1Q tag buys 4 bytes; a VLAN PPI on a full frame too.
  auto tagged = Frame(1518, 2);
  tagged[12] = 0x81;
  tagged[13] = 0x00;
  netvsc_->SendRndisGpaDirect(NetvscGuest::PacketMessage(tagged),
                              kRndisChannelData);
  EXPECT_EQ(HostFrames().size(), 1u);
  // Large send was not offered.
  netvsc_->SendRndisGpaDirect(
      NetvscGuest::PacketMessage(Frame(1000, 3), std::nullopt, 1u << 30),
      kRndisChannelData);
  EXPECT_TRUE(HostFrames().empty());
  EXPECT_EQ(counters().drop(Drop::kFromGuestUnsupported), 1u);
  // GPA-direct ranges naming more than a frame could need.
  std::vector<uint8_t> huge(70000, 0);
  const uint64_t big = netvsc_->SendRndisGpaDirect(huge, kRndisChannelData,
                                                   kNoSendSection, 0, 0, 4096);
  netvsc_->ProcessInbound();
  EXPECT_EQ(netvsc_->RndisCompletionStatus(big), kNvspStatusFail);
}

TEST_F(NetAdapterTest, CompletionsForIdsNeverSent) {
  ASSERT_TRUE(netvsc_->BringUp());
  netvsc_->ProcessInbound();
  const uint64_t before = counters().protocol_errors.load();
  NvspMessage m = MakeNvsp(kNvspMsg1SendRndisPacketComplete,
                           Nvsp1SendRndisPacketComplete{kNvspStatusSuccess});
  for (uint64_t id : {0ull, 12345ull, ~0ull}) {
    netvsc_->Write(vmbus::kPacketCompletion, 0, id, {}, Bytes(m));
  }
  EXPECT_EQ(counters().protocol_errors.load(), before + 3);
  // A completion for a real receive, twice: the second is unknown.
  netvsc_->hold_receives = true;
  HostSend(Frame(100, 1));
  adapter_->Poll();
  netvsc_->ProcessInbound();
  ASSERT_EQ(netvsc_->held.size(), 1u);
  const uint64_t real = netvsc_->held[0];
  netvsc_->CompleteReceives();
  netvsc_->Write(vmbus::kPacketCompletion, 0, real, {}, Bytes(m));
  EXPECT_EQ(counters().protocol_errors.load(), before + 4);
}

TEST_F(NetAdapterTest, GuestThatHoldsReceivesStopsTheTapReadsNotTheWorker) {
  // A 64 KiB receive buffer (37 sections), so that the socket standing in
  // for the TAP device can hold the frames that wait.
  netvsc_ = std::make_unique<NetvscGuest>(
      guest_, *server_, [this] { adapter_->Poll(); },
      testing::GuestLayout{.receive_pages = 16});
  ASSERT_TRUE(netvsc_->BringUp());
  netvsc_->ProcessInbound();
  netvsc_->hold_receives = true;
  const uint32_t sections = netvsc_->receive_section_count;
  // More frames than sections: the sections run out, the adapter stops
  // reading; the rest waits in the socket (the TAP's own queue).
  for (uint32_t i = 0; i < sections + 20; ++i) HostSend(Frame(60, i));
  adapter_->Poll();
  netvsc_->ProcessInbound();
  EXPECT_EQ(netvsc_->frames.size(), sections);
  EXPECT_EQ(counters().ToGuestDrops(), 0u);
  // Completing frees the sections and the rest comes in.
  netvsc_->CompleteReceives();
  adapter_->Poll();
  netvsc_->ProcessInbound();
  EXPECT_EQ(netvsc_->frames.size(), sections + 20);
  for (uint32_t i = 0; i < sections + 20; ++i)
    ASSERT_EQ(netvsc_->frames[i], Frame(60, i)) << i;
}

TEST_F(NetAdapterTest, FloodOfSendsWhileTheTapIsFull) {
  ASSERT_TRUE(netvsc_->BringUp());
  netvsc_->ProcessInbound();
  // Nobody reads the host end: the socket's buffer fills and writes fail.
  const auto f = Frame(1514, 1);
  const auto msg = NetvscGuest::PacketMessage(f);
  uint64_t completed = 0;
  for (int i = 0; i < 2000; ++i) {
    const uint64_t id = netvsc_->SendInSection({msg}, i % 8);
    netvsc_->ProcessInbound();
    if (netvsc_->RndisCompletionStatus(id) == kNvspStatusSuccess) ++completed;
  }
  EXPECT_EQ(completed, 2000u) << "every send is completed";
  EXPECT_GT(counters().drop(Drop::kFromGuestTapWrite), 0u);
  EXPECT_EQ(counters().from_guest_packets.load() +
                counters().drop(Drop::kFromGuestTapWrite),
            2000u);
  // Once the host reads, frames pass again.
  HostFrames();
  netvsc_->SendInSection({msg});
  EXPECT_EQ(HostFrames().size(), 1u);
}

TEST_F(NetAdapterTest, AGuestThatNeverReadsCompletionsIsNotDrainedForever) {
  ASSERT_TRUE(netvsc_->BringUp());
  netvsc_->ProcessInbound();
  const auto msg = NetvscGuest::PacketMessage(Frame(60, 1));
  std::memcpy(guest_.memory.base() + 1024 * 4096, msg.data(), msg.size());
  const NvspMessage request =
      MakeNvsp(kNvspMsg1SendRndisPacket,
               Nvsp1SendRndisPacket{0, 0, static_cast<uint32_t>(msg.size())});
  // The guest sends and sends but never reads its inbound ring: it fills
  // with completions, a bounded number wait in the adapter, then the
  // adapter stops draining and the guest's own ring fills up.
  int sent = 0;
  for (; sent < 10000; ++sent) {
    if (!guest_.out->Write(vmbus::kPacketDataInband,
                           vmbus::kPacketFlagCompletionRequested, 10000 + sent,
                           {}, Bytes(request))) {
      break;
    }
    netvsc_->Signal();
  }
  ASSERT_LT(sent, 10000) << "the host kept draining without a bound";
  EXPECT_NE(guest_.out->header()->read_index,
            guest_.out->header()->write_index);
  // The guest reads: everything flows again, every request is completed.
  uint64_t completions = 0;
  for (int i = 0; i < 200 && completions < static_cast<uint64_t>(sent); ++i) {
    netvsc_->ProcessInbound();
    completions += netvsc_->completions.size();
    netvsc_->completions.clear();
  }
  EXPECT_EQ(completions, static_cast<uint64_t>(sent));
  EXPECT_EQ(guest_.out->header()->read_index,
            guest_.out->header()->write_index);
}

TEST_F(NetAdapterTest, ReceiveBufferTornDownWhileInUse) {
  ASSERT_TRUE(netvsc_->BringUp());
  netvsc_->ProcessInbound();
  netvsc_->hold_receives = true;
  HostSend(Frame(100, 1));
  adapter_->Poll();
  // Linux: REVOKE_RECV_BUF, then (after close on WIN10+) GPADL_TEARDOWN.
  NvspMessage revoke =
      MakeNvsp(kNvspMsg1RevokeReceiveBuffer,
               Nvsp1RevokeBuffer{NetvscGuest::kReceiveBufferId});
  netvsc_->Write(vmbus::kPacketDataInband, 0, 0, {}, Bytes(revoke));
  auto teardown =
      vmbus::MakeMessage<vmbus::GpadlTeardown>(vmbus::kMsgGpadlTeardown);
  teardown.child_relid = netvsc_->relid;
  teardown.gpadl = NetvscGuest::kReceiveGpadl;
  guest_.Send(teardown);
  EXPECT_EQ(guest_.Expect<vmbus::GpadlTorndown>(vmbus::kMsgGpadlTorndown).gpadl,
            NetvscGuest::kReceiveGpadl);
  // After the teardown nothing is written to those pages.
  uint8_t* buffer = guest_.memory.base() + 256 * 4096;
  std::memset(buffer, 0xEE, 256 * 4096);
  HostSend(Frame(100, 2));
  adapter_->Poll();
  for (size_t i = 0; i < 256 * 4096; ++i) ASSERT_EQ(buffer[i], 0xEE) << i;
  EXPECT_EQ(counters().drop(Drop::kToGuestNotReady), 1u);
}

TEST_F(NetAdapterTest, TeardownWithoutRevokeAlsoStopsWrites) {
  ASSERT_TRUE(netvsc_->BringUp());
  netvsc_->ProcessInbound();
  auto teardown =
      vmbus::MakeMessage<vmbus::GpadlTeardown>(vmbus::kMsgGpadlTeardown);
  teardown.child_relid = netvsc_->relid;
  teardown.gpadl = NetvscGuest::kReceiveGpadl;
  guest_.Send(teardown);
  guest_.Expect<vmbus::GpadlTorndown>(vmbus::kMsgGpadlTorndown);
  uint8_t* buffer = guest_.memory.base() + 256 * 4096;
  std::memset(buffer, 0xEE, 256 * 4096);
  // Without the device thread having run: the revoke happened at once.
  HostSend(Frame(100, 2));
  adapter_->Poll();
  for (size_t i = 0; i < 256 * 4096; ++i) ASSERT_EQ(buffer[i], 0xEE) << i;
}

TEST_F(NetAdapterTest, CloseAndReopenStartsAFreshSession) {
  ASSERT_TRUE(netvsc_->BringUp());
  auto close = vmbus::MakeMessage<vmbus::CloseChannel>(vmbus::kMsgCloseChannel);
  close.child_relid = netvsc_->relid;
  guest_.Send(close);
  adapter_->Poll();
  EXPECT_FALSE(counters().guest_ready.load());
  for (uint32_t g : {NetvscGuest::kRingGpadl, NetvscGuest::kReceiveGpadl,
                     NetvscGuest::kSendGpadl}) {
    auto teardown =
        vmbus::MakeMessage<vmbus::GpadlTeardown>(vmbus::kMsgGpadlTeardown);
    teardown.child_relid = netvsc_->relid;
    teardown.gpadl = g;
    guest_.Send(teardown);
    guest_.Expect<vmbus::GpadlTorndown>(vmbus::kMsgGpadlTorndown);
  }
  // A new guest driver (the same guest after a module reload).
  NetvscGuest again(guest_, *server_, [this] { adapter_->Poll(); });
  guest_.Send(vmbus::MakeMessage<vmbus::Unload>(vmbus::kMsgUnload));
  guest_.Expect<vmbus::UnloadResponse>(vmbus::kMsgUnloadResponse);
  ASSERT_TRUE(again.BringUp());
  const auto f = Frame(300, 3);
  again.SendInSection({NetvscGuest::PacketMessage(f)});
  EXPECT_EQ(HostFrames(), std::vector<std::vector<uint8_t>>{f});
}

TEST_F(NetAdapterTest, JumboFrames) {
  TearDown();
  Build({}, 9000);
  ASSERT_TRUE(netvsc_->BringUp());
  EXPECT_EQ(netvsc_->mtu, 9000u);
  EXPECT_GE(netvsc_->receive_section_size, 9000u + 14 + 44);
  for (uint32_t size : {60u, 1514u, 5000u, 9014u}) {
    const auto f = Frame(size, size);
    netvsc_->SendRndisGpaDirect(NetvscGuest::PacketMessage(f),
                                kRndisChannelData);
    EXPECT_EQ(HostFrames(), std::vector<std::vector<uint8_t>>{f}) << size;
    HostSend(f);
    adapter_->Poll();
    netvsc_->ProcessInbound();
    ASSERT_EQ(netvsc_->frames.size(), 1u) << size;
    EXPECT_EQ(netvsc_->frames.front(), f);
    netvsc_->frames.clear();
  }
  netvsc_->SendRndisGpaDirect(NetvscGuest::PacketMessage(Frame(9015, 1)),
                              kRndisChannelData);
  EXPECT_EQ(counters().drop(Drop::kFromGuestOversized), 1u);
}

TEST(NetAdapterCreateTest, RefusesBadConfigs) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
  base::ScopedFd other(sv[1]);
  NetAdapter::Config c;
  c.tap = base::ScopedFd(sv[0]);
  c.mtu = 60;
  c.name = "nic9";
  auto a = NetAdapter::Create(std::move(c), {.manual = true});
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(a.status().message().find("nic9"), std::string::npos);
  NetAdapter::Config d;
  d.tap = base::ScopedFd(9999);
  d.name = "nic8";
  a = NetAdapter::Create(std::move(d), {.manual = true});
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
}

// The real device thread: the VP thread only signals.
TEST(AdapterThreadTest, DeviceThreadMovesFramesBothWays) {
  FakeGuest guest(kRamPages);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
  base::ScopedFd host(sv[1]);
  NetAdapter::Config config;
  config.mac = kMac;
  config.tap = base::ScopedFd(sv[0]);
  config.name = "nic0 (thread)";
  std::atomic<int> started{0};
  auto adapter =
      NetAdapter::Create(std::move(config), {.on_thread_start = [&started] {
                           ++started;
                           return absl::OkStatus();
                         }});
  ASSERT_TRUE(adapter.ok());
  vmbus::VmbusServer server(guest.memory, guest, {.vp_count = 1});
  guest.server = &server;
  ASSERT_TRUE(server.AddVsp(adapter->get()).ok());
  (*adapter)->Start();
  // The guest waits a little for the thread after each signal.
  NetvscGuest netvsc(guest, server, [] {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  });
  auto wait_for = [&](auto done) {
    for (int i = 0; i < 400 && !done(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      netvsc.ProcessInbound();
    }
    return done();
  };
  ASSERT_TRUE(netvsc.Open());
  ASSERT_EQ(netvsc.Negotiate(), kNvspVersion61);
  ASSERT_TRUE(netvsc.LendReceiveBuffer());
  ASSERT_TRUE(netvsc.LendSendBuffer());
  ASSERT_TRUE(netvsc.BringUpRndis());
  EXPECT_EQ(started.load(), 1);
  const auto f = Frame(1514, 42);
  netvsc.SendInSection({NetvscGuest::PacketMessage(f)});
  uint8_t buf[2048];
  ssize_t n = -1;
  for (int i = 0; i < 400 && n < 0; ++i) {
    n = ::recv(host.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(n, 1514);
  EXPECT_EQ(0, std::memcmp(buf, f.data(), f.size()));
  ASSERT_EQ(::send(host.get(), f.data(), f.size(), 0), 1514);
  EXPECT_TRUE(wait_for([&] { return !netvsc.frames.empty(); }));
  ASSERT_EQ(netvsc.frames.size(), 1u);
  EXPECT_EQ(netvsc.frames[0], f);
  // Stop: link down goes to the guest first.
  (*adapter)->Stop();
  netvsc.ProcessInbound();
  EXPECT_EQ(netvsc.indications.back(), kRndisStatusMediaDisconnect);
}

}  // namespace
}  // namespace vsp::net
