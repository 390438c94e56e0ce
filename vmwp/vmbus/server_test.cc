#include "vmwp/vmbus/server.h"

#include <cstring>
#include <deque>
#include <optional>

#include "gtest/gtest.h"
#include "vmwp/vmbus/test_fake_guest.h"

namespace vmbus {
namespace {

using testing::FakeGuest;
using testing::GuestRing;

using testing::kFakeGuestRamPages;

// Records what a VSP is asked to do and echoes every packet back as a
// completion with the same transaction id.
class EchoVsp : public Vsp {
 public:
  explicit EchoVsp(uint32_t n) {
    offer_.interface_type =
        Guid::FromFields(0x57164f39, 0x9115, 0x4e78,
                         {0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5, 0x42, 0x2d});
    offer_.interface_instance =
        Guid::FromFields(0x1000 + n, 1, 2, {1, 2, 3, 4, 5, 6, 7, 8});
  }
  const VspOffer& offer() const override { return offer_; }
  absl::Status OnOpen(std::shared_ptr<ChannelEndpoint> endpoint,
                      std::span<const uint8_t> user_data) override {
    ++opens;
    if (fail_open) return absl::InternalError("refused");
    endpoint_ = std::move(endpoint);
    return absl::OkStatus();
  }
  void OnPacket(ChannelEndpoint& ep, const Packet& p) override {
    ++packets;
    auto r = ep.Send(kPacketCompletion, 0, p.trans_id, p.data());
    EXPECT_TRUE(r.ok() && r->written);
  }
  void OnClose(uint32_t relid) override {
    ++closes;
    endpoint_.reset();
  }
  VspOffer offer_;
  bool fail_open = false;
  int opens = 0, packets = 0, closes = 0;
  std::shared_ptr<ChannelEndpoint> endpoint_;
};

class ServerTest : public ::testing::Test {
 protected:
  ServerTest() : server_(guest_.memory, guest_, {.vp_count = 2}) {
    guest_.server = &server_;
  }
  // After Connect + RequestOffers: add `vsp`, GPADL 40 pages at page 100,
  // open with 20 + 20 pages.
  uint32_t OpenEcho(EchoVsp& vsp, uint32_t handle = 0xE1E10) {
    auto relid = server_.AddVsp(&vsp);
    EXPECT_TRUE(relid.ok());
    // Offers were already requested: the hot-added one goes out at once.
    EXPECT_EQ(guest_.Expect<OfferChannel>(kMsgOfferChannel).child_relid,
              *relid);
    guest_.InitRings(100, 40, 20);
    EXPECT_EQ(guest_.CreateGpadl(*relid, handle, FakeGuest::Pages(100, 40))
                  .creation_status,
              0u);
    EXPECT_EQ(guest_.Open(*relid, handle, 20, 7).status, 0u);
    return *relid;
  }
  FakeGuest guest_;
  std::deque<EchoVsp> vsps_;  // VSPs outlive the server
  VmbusServer server_;
};

TEST_F(ServerTest, NegotiatesOffersCreatesGpadlOpensAndExchangesPackets) {
  EchoVsp& vsp = vsps_.emplace_back(1);
  auto relid = server_.AddVsp(&vsp);
  ASSERT_TRUE(relid.ok());
  EXPECT_EQ(*relid, 1u);

  VersionResponse v = guest_.Connect(kVersionWin10V5_3);
  EXPECT_EQ(v.version_supported, 1);
  EXPECT_EQ(v.msg_conn_id, kMessageConnectionId);
  EXPECT_EQ(guest_.last_sint, kVmbusMessageSint);
  EXPECT_EQ(server_.version(), kVersionWin10V5_3);

  std::vector<OfferChannel> offers = guest_.RequestOffers();
  ASSERT_EQ(offers.size(), 1u);
  EXPECT_EQ(offers[0].child_relid, 1u);
  EXPECT_EQ(offers[0].offer.if_type.ToString(),
            "57164f39-9115-4e78-ab55-382f3bd5422d");
  EXPECT_EQ(offers[0].offer.if_instance, vsp.offer().interface_instance);
  EXPECT_EQ(offers[0].monitor_allocated, 0);
  const uint32_t connection_id = offers[0].connection_id;

  guest_.InitRings(100, 40, 20);
  GpadlCreated created =
      guest_.CreateGpadl(1, 0xE1E10, FakeGuest::Pages(100, 40));
  EXPECT_EQ(created.gpadl, 0xE1E10u);
  EXPECT_EQ(created.child_relid, 1u);
  EXPECT_EQ(created.creation_status, 0u);

  OpenChannelResult opened = guest_.Open(1, 0xE1E10, 20, 7, /*vp=*/1);
  EXPECT_EQ(opened.child_relid, 1u);
  EXPECT_EQ(opened.openid, 7u);
  EXPECT_EQ(opened.status, 0u);
  EXPECT_TRUE(server_.channel_open(1));
  EXPECT_EQ(vsp.opens, 1);

  // Guest -> host -> guest.
  std::vector<uint8_t> hello = {'h', 'e', 'l', 'l', 'o'};
  EXPECT_EQ(guest_.out->Write(kPacketDataInband, 1, 99, hello), true);
  EXPECT_EQ(server_.OnSignalEvent(0, connection_id, 0), HvStatus::kSuccess);
  EXPECT_EQ(vsp.packets, 1);
  auto reply = guest_.in->Read();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->type, kPacketCompletion);
  EXPECT_EQ(reply->trans_id, 99u);
  EXPECT_EQ(0, std::memcmp(reply->data.data(), hello.data(), hello.size()));
  // The host interrupted the guest on the channel's target VP, flag = relid.
  ASSERT_EQ(guest_.signals.size(), 1u);
  EXPECT_EQ(guest_.signals[0], std::make_pair(1u, 1u));
  EXPECT_EQ(guest_.out->header()->read_index,
            guest_.out->header()->write_index);

  // Close, tear down, unload.
  guest_.Send(MakeMessage<CloseChannel>(kMsgCloseChannel));  // relid 0
  EXPECT_TRUE(server_.channel_open(1));
  auto close = MakeMessage<CloseChannel>(kMsgCloseChannel);
  close.child_relid = 1;
  guest_.Send(close);
  EXPECT_FALSE(server_.channel_open(1));
  EXPECT_EQ(vsp.closes, 1);
  auto teardown = MakeMessage<GpadlTeardown>(kMsgGpadlTeardown);
  teardown.child_relid = 1;
  teardown.gpadl = 0xE1E10;
  guest_.Send(teardown);
  EXPECT_EQ(guest_.Expect<GpadlTorndown>(kMsgGpadlTorndown).gpadl, 0xE1E10u);
  EXPECT_EQ(server_.gpadl_count(), 0u);
  guest_.Send(MakeMessage<Unload>(kMsgUnload));
  guest_.Expect<UnloadResponse>(kMsgUnloadResponse);
  EXPECT_FALSE(server_.connected());
  EXPECT_TRUE(guest_.inbox.empty());
}

TEST_F(ServerTest, NegotiatesEveryVersionLinuxOffersAndRefusesOthers) {
  for (uint32_t version : VmbusServer::kSupportedVersions) {
    VersionResponse v = guest_.Connect(version, /*vcpu=*/1);
    EXPECT_EQ(v.version_supported, 1) << std::hex << version;
    EXPECT_EQ(guest_.last_vp, 1u);
    guest_.Send(MakeMessage<Unload>(kMsgUnload));
    guest_.Expect<UnloadResponse>(kMsgUnloadResponse);
  }
  // Linux walks its list from the newest; what we do not know is refused
  // and the guest moves on.
  for (uint32_t version : {(6u << 16), kVersionWs2008, 0u, 0xFFFFFFFFu}) {
    EXPECT_EQ(guest_.Connect(version).version_supported, 0);
    EXPECT_FALSE(server_.connected());
  }
  EXPECT_EQ(guest_.Connect(kVersionWin10V5_2).version_supported, 1);
  // A second INITIATE_CONTACT without UNLOAD is refused, the connection
  // stays.
  EXPECT_EQ(guest_.Connect(kVersionWin8).version_supported, 0);
  EXPECT_EQ(server_.version(), kVersionWin10V5_2);
}

TEST_F(ServerTest, RefusesBadContactParameters) {
  auto m = MakeMessage<InitiateContact>(kMsgInitiateContact);
  m.vmbus_version_requested = kVersionWin10V5_3;
  m.target_vcpu = 5;  // the VM has 2
  m.interrupt_page_or_sint = 2;
  guest_.Send(m, kMessageConnectionId4);
  EXPECT_EQ(
      guest_.Expect<VersionResponse>(kMsgVersionResponse).version_supported, 0);
  m.target_vcpu = 0;
  m.interrupt_page_or_sint = 77;  // no such SINT
  guest_.Send(m, kMessageConnectionId4);
  EXPECT_EQ(
      guest_.Expect<VersionResponse>(kMsgVersionResponse).version_supported, 0);
  m.vmbus_version_requested = kVersionWin7;
  m.interrupt_page_or_sint = 1ull << 40;  // WIN7 interrupt page outside RAM
  guest_.Send(m);
  EXPECT_EQ(
      guest_.Expect<VersionResponse>(kMsgVersionResponse).version_supported, 0);
  EXPECT_FALSE(server_.connected());
}

TEST_F(ServerTest, OutOfOrderMessagesAreDroppedAndTheServerCarriesOn) {
  // Before INITIATE_CONTACT.
  EXPECT_EQ(server_
                .HandleMessage(
                    MessageBytes(MakeMessage<RequestOffers>(kMsgRequestOffers)))
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(
      server_.HandleMessage(MessageBytes(MakeMessage<Unload>(kMsgUnload)))
          .ok());
  EXPECT_TRUE(guest_.inbox.empty());
  // Not VMBus message connections / types.
  std::vector<uint8_t> unload = MessageBytes(MakeMessage<Unload>(kMsgUnload));
  EXPECT_EQ(server_.OnPostMessage(0, 3, kVmbusMessageType, unload),
            HvStatus::kInvalidConnectionId);
  EXPECT_EQ(server_.OnPostMessage(0, kMessageConnectionId, 2, unload),
            HvStatus::kInvalidParameter);
  EXPECT_EQ(server_.OnSignalEvent(0, 12345, 0), HvStatus::kInvalidConnectionId);

  EchoVsp& vsp = vsps_.emplace_back(1);
  ASSERT_TRUE(server_.AddVsp(&vsp).ok());
  guest_.Connect(kVersionWin10V5);
  guest_.RequestOffers();
  EXPECT_FALSE(server_
                   .HandleMessage(MessageBytes(
                       MakeMessage<RequestOffers>(kMsgRequestOffers)))
                   .ok());
  // OPENCHANNEL without a GPADL: answered with a failure.
  EXPECT_NE(guest_.Open(1, 0x1234, 2, 1).status, 0u);
  // GPADL_BODY with no header; CLOSECHANNEL of a closed channel;
  // RELID_RELEASED without rescind; teardown of nothing.
  std::vector<uint8_t> raw(24, 0);
  raw[0] = kMsgGpadlBody;
  EXPECT_FALSE(server_.HandleMessage(raw).ok());
  auto close = MakeMessage<CloseChannel>(kMsgCloseChannel);
  close.child_relid = 1;
  EXPECT_FALSE(server_.HandleMessage(MessageBytes(close)).ok());
  auto released = MakeMessage<RelidReleased>(kMsgRelidReleased);
  released.child_relid = 1;
  EXPECT_FALSE(server_.HandleMessage(MessageBytes(released)).ok());
  auto teardown = MakeMessage<GpadlTeardown>(kMsgGpadlTeardown);
  teardown.gpadl = 5;
  EXPECT_FALSE(server_.HandleMessage(MessageBytes(teardown)).ok());
  // Garbage of every size.
  for (size_t n = 0; n <= kMaxMessageSize; ++n) {
    std::vector<uint8_t> junk(n, static_cast<uint8_t>(n * 31));
    server_.OnPostMessage(0, kMessageConnectionId, kVmbusMessageType, junk);
  }
  guest_.inbox.clear();
  EXPECT_GT(server_.dropped_messages(), 200u);

  // Still fully working.
  guest_.InitRings(100, 40, 20);
  EXPECT_EQ(guest_.CreateGpadl(1, 9, FakeGuest::Pages(100, 40)).creation_status,
            0u);
  EXPECT_EQ(guest_.Open(1, 9, 20, 2).status, 0u);
  EXPECT_FALSE(
      server_
          .HandleMessage(MessageBytes(teardown =
                                          [] {
                                            auto t = MakeMessage<GpadlTeardown>(
                                                kMsgGpadlTeardown);
                                            t.child_relid = 1;
                                            t.gpadl = 9;
                                            return t;
                                          }()))
          .ok());  // the ring of an open channel cannot be torn down
  EXPECT_NE(guest_.Open(1, 9, 20, 3).status, 0u);  // already open
}

TEST_F(ServerTest, HostileGpadlsGetAFailureStatus) {
  EchoVsp& vsp = vsps_.emplace_back(1);
  ASSERT_TRUE(server_.AddVsp(&vsp).ok());
  guest_.Connect(kVersionWin10V5_3);
  guest_.RequestOffers();
  // Outside RAM (just past it, and absurd).
  EXPECT_NE(
      guest_.CreateGpadl(1, 1, {10, 11, kFakeGuestRamPages}).creation_status,
      0u);
  EXPECT_NE(guest_.CreateGpadl(1, 2, {10, ~0ull >> 12}).creation_status, 0u);
  // Overlapping (a page twice), spread over header and body.
  std::vector<uint64_t> pages = FakeGuest::Pages(10, 40);
  pages[35] = 12;
  EXPECT_NE(guest_.CreateGpadl(1, 3, pages).creation_status, 0u);
  // Handle reuse: the first succeeds, the second fails, the first stays.
  EXPECT_EQ(guest_.CreateGpadl(1, 4, {10, 11}).creation_status, 0u);
  EXPECT_NE(guest_.CreateGpadl(1, 4, {20, 21}).creation_status, 0u);
  EXPECT_EQ(server_.gpadl_count(), 1u);
  // Wrong totals: a body that brings more PFNs than range_buflen.
  GpadlHeader h{};
  h.header.msgtype = kMsgGpadlHeader;
  h.child_relid = 1;
  h.gpadl = 5;
  h.range_buflen = 8 + 2 * 8;
  h.rangecount = 1;
  std::vector<uint8_t> m(sizeof(h) + 16);
  std::memcpy(m.data(), &h, sizeof(h));
  GpaRangeHeader r{8192, 0};
  std::memcpy(m.data() + sizeof(h), &r, 8);
  std::memcpy(m.data() + sizeof(h) + 8, &pages[0], 8);
  EXPECT_TRUE(server_.HandleMessage(m).ok());  // waits for one more PFN
  GpadlBody b{};
  b.header.msgtype = kMsgGpadlBody;
  b.gpadl = 5;
  std::vector<uint8_t> body(sizeof(b) + 16);
  std::memcpy(body.data(), &b, sizeof(b));
  EXPECT_FALSE(server_.HandleMessage(body).ok());
  EXPECT_NE(guest_.Expect<GpadlCreated>(kMsgGpadlCreated).creation_status, 0u);
  // Unknown relid: dropped without an answer.
  EXPECT_FALSE(server_
                   .HandleMessage(m =
                                      [&] {
                                        auto c = m;
                                        c[8] = 77;
                                        return c;
                                      }())
                   .ok());
  EXPECT_TRUE(guest_.inbox.empty());
}

TEST_F(ServerTest, BadOpenRequestsFail) {
  EchoVsp& vsp = vsps_.emplace_back(1);
  ASSERT_TRUE(server_.AddVsp(&vsp).ok());
  guest_.Connect(kVersionWin10V5_3);
  guest_.RequestOffers();
  guest_.InitRings(100, 40, 20);
  ASSERT_EQ(guest_.CreateGpadl(1, 1, FakeGuest::Pages(100, 40)).creation_status,
            0u);
  for (uint32_t split : {0u, 1u, 39u, 40u, 1000u}) {
    EXPECT_NE(guest_.Open(1, 1, split, 1).status, 0u) << split;
  }
  EXPECT_NE(guest_.Open(1, 1, 20, 1, /*target_vp=*/2).status, 0u);
  // A ring whose guest-owned index is already outside the ring.
  guest_.out->header()->read_index = 1u << 30;
  EXPECT_NE(guest_.Open(1, 1, 20, 1).status, 0u);
  guest_.out->header()->read_index = 0;
  vsp.fail_open = true;
  EXPECT_NE(guest_.Open(1, 1, 20, 1).status, 0u);
  vsp.fail_open = false;
  EXPECT_EQ(guest_.Open(1, 1, 20, 1).status, 0u);
  EXPECT_FALSE(server_.channel_open(2));
}

TEST_F(ServerTest, GarbageInTheRingBreaksOnlyThatChannel) {
  EchoVsp& a = vsps_.emplace_back(1);
  EchoVsp& b = vsps_.emplace_back(2);
  ASSERT_TRUE(server_.AddVsp(&a).ok());
  ASSERT_TRUE(server_.AddVsp(&b).ok());
  guest_.Connect(kVersionWin10V5_3);
  auto offers = guest_.RequestOffers();
  ASSERT_EQ(offers.size(), 2u);
  guest_.InitRings(100, 40, 20);
  ASSERT_EQ(guest_.CreateGpadl(1, 1, FakeGuest::Pages(100, 40)).creation_status,
            0u);
  ASSERT_EQ(guest_.Open(1, 1, 20, 1).status, 0u);
  auto rings_a = std::move(guest_.out);
  guest_.InitRings(200, 8, 4);
  ASSERT_EQ(guest_.CreateGpadl(2, 2, FakeGuest::Pages(200, 8)).creation_status,
            0u);
  ASSERT_EQ(guest_.Open(2, 2, 4, 1).status, 0u);

  std::vector<uint8_t> junk(64, 0xEE);
  rings_a->WriteRaw(junk);
  EXPECT_EQ(server_.OnSignalEvent(0, offers[0].connection_id, 0),
            HvStatus::kSuccess);
  EXPECT_EQ(a.packets, 0);
  // The other channel still works.
  std::vector<uint8_t> ping = {1, 2, 3};
  guest_.out->Write(kPacketDataInband, 0, 5, ping);
  EXPECT_EQ(server_.OnSignalEvent(0, offers[1].connection_id, 0),
            HvStatus::kSuccess);
  EXPECT_EQ(b.packets, 1);
  EXPECT_TRUE(guest_.in->Read().has_value());
}

TEST_F(ServerTest, RescindClosesAndWaitsForRelease) {
  EchoVsp& vsp = vsps_.emplace_back(1);
  guest_.Connect(kVersionWin10V5_3);
  guest_.RequestOffers();
  // Hot-add after ALLOFFERS_DELIVERED: offered at once.
  uint32_t relid = 0;
  {
    auto r = server_.AddVsp(&vsp);
    ASSERT_TRUE(r.ok());
    relid = *r;
    EXPECT_EQ(guest_.Expect<OfferChannel>(kMsgOfferChannel).child_relid, relid);
  }
  guest_.InitRings(100, 40, 20);
  ASSERT_EQ(
      guest_.CreateGpadl(relid, 1, FakeGuest::Pages(100, 40)).creation_status,
      0u);
  ASSERT_EQ(guest_.Open(relid, 1, 20, 1).status, 0u);
  ASSERT_TRUE(server_.Rescind(relid).ok());
  EXPECT_EQ(vsp.closes, 1);
  EXPECT_EQ(server_.gpadl_count(), 0u);
  EXPECT_EQ(
      guest_.Expect<RescindChannelOffer>(kMsgRescindChannelOffer).child_relid,
      relid);
  EXPECT_FALSE(server_.Rescind(relid).ok());
  // Until RELID_RELEASED the relid is not reused.
  EchoVsp& other = vsps_.emplace_back(2);
  EXPECT_NE(*server_.AddVsp(&other), relid);
  guest_.inbox.clear();
  auto released = MakeMessage<RelidReleased>(kMsgRelidReleased);
  released.child_relid = relid;
  EXPECT_TRUE(server_.HandleMessage(MessageBytes(released)).ok());
}

TEST_F(ServerTest, UnloadClosesEverythingAndAllowsReconnect) {
  EchoVsp& vsp = vsps_.emplace_back(1);
  guest_.Connect(kVersionWin10V5_3);
  guest_.RequestOffers();
  OpenEcho(vsp);
  guest_.Send(MakeMessage<Unload>(kMsgUnload));
  guest_.Expect<UnloadResponse>(kMsgUnloadResponse);
  EXPECT_EQ(vsp.closes, 1);
  EXPECT_EQ(server_.gpadl_count(), 0u);
  // A kexec'd kernel connects again and finds the same offer.
  EXPECT_EQ(guest_.Connect(kVersionWin10V5_2).version_supported, 1);
  EXPECT_EQ(guest_.RequestOffers().size(), 1u);
}

TEST_F(ServerTest, ModifyChannelMovesInterruptsToAnotherVp) {
  EchoVsp& vsp = vsps_.emplace_back(1);
  guest_.Connect(kVersionWin10V5_3);
  guest_.RequestOffers();
  uint32_t relid = OpenEcho(vsp);
  auto m = MakeMessage<ModifyChannel>(kMsgModifyChannel);
  m.child_relid = relid;
  m.target_vp = 1;
  guest_.Send(m);
  EXPECT_EQ(
      guest_.Expect<ModifyChannelResponse>(kMsgModifyChannelResponse).status,
      0u);
  std::vector<uint8_t> ping = {1};
  guest_.out->Write(kPacketDataInband, 0, 1, ping);
  server_.OnSignalEvent(0, VmbusServer::kChannelConnectionIdBase + relid, 0);
  ASSERT_FALSE(guest_.signals.empty());
  EXPECT_EQ(guest_.signals.back().first, 1u);
}

}  // namespace
}  // namespace vmbus

namespace vmbus {
namespace {

TEST_F(ServerTest, Win7SignalsThroughTheInterruptPage) {
  EchoVsp& vsp = vsps_.emplace_back(1);
  EXPECT_EQ(guest_.Connect(kVersionWin7).version_supported, 1);
  EXPECT_EQ(guest_.last_sint, kVmbusMessageSint);
  guest_.RequestOffers();
  uint32_t relid = OpenEcho(vsp);
  std::vector<uint8_t> ping = {1, 2};
  guest_.out->Write(kPacketDataInband, 0, 1, ping);
  server_.OnSignalEvent(0, VmbusServer::ConnectionIdForRelid(relid), 0);
  ASSERT_EQ(guest_.signals.size(), 1u);
  EXPECT_EQ(guest_.signals[0].second, 0u);  // flag 0: "look at the page"
  // FakeGuest::Connect put the interrupt page at guest page 200; the host
  // sets the relid's bit in its receive (first) half.
  const uint8_t* page = guest_.memory.base() + 200 * kPageSize;
  EXPECT_EQ(page[relid / 8] & (1u << (relid % 8)), 1u << (relid % 8));
}

// A channel added at run time (a storage sub-channel): the hook runs with
// its relid before the offer is posted; a failing hook fails AddVsp.
TEST(ServerHookTest, ChannelAddedHookRunsBeforeTheOffer) {
  FakeGuest guest;
  std::vector<std::pair<uint32_t, size_t>> calls;  // relid, offers posted
  bool fail = false;
  VmbusServer server(guest.memory, guest,
                     {.vp_count = 1, .on_channel_added = [&](uint32_t relid) {
                        calls.emplace_back(relid, guest.inbox.size());
                        return fail ? absl::InternalError("no port")
                                    : absl::OkStatus();
                      }});
  guest.server = &server;
  EchoVsp a(1), b(2), c(3);
  ASSERT_TRUE(server.AddVsp(&a).ok());
  guest.Connect(kVersionWin10V5_3);
  EXPECT_EQ(guest.RequestOffers().size(), 1u);
  auto relid = server.AddVsp(&b);
  ASSERT_TRUE(relid.ok());
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].first, *relid);
  EXPECT_EQ(calls[1].second, 0u);  // nothing posted yet when it ran
  EXPECT_EQ(guest.Expect<OfferChannel>(kMsgOfferChannel).child_relid, *relid);
  fail = true;
  EXPECT_FALSE(server.AddVsp(&c).ok());
  EXPECT_TRUE(guest.inbox.empty());
}

}  // namespace
}  // namespace vmbus

namespace vmbus {
namespace {

// A VSP that drains on "its own thread" (here: the test, when it chooses),
// maps buffer GPADLs and watches their teardown.
class OwnThreadVsp : public Vsp {
 public:
  OwnThreadVsp() {
    offer_.interface_type =
        Guid::FromFields(0xf8615163, 0xdf3e, 0x46c5,
                         {0x91, 0x3f, 0xf2, 0xd2, 0xf9, 0x65, 0xed, 0x0e});
    offer_.interface_instance = Guid::FromFields(0x77, 0, 0, {});
    offer_.drain_on_vp_thread = false;
  }
  const VspOffer& offer() const override { return offer_; }
  absl::Status OnOpen(std::shared_ptr<ChannelEndpoint> endpoint,
                      std::span<const uint8_t>) override {
    endpoint_ = std::move(endpoint);
    return absl::OkStatus();
  }
  void OnPacket(ChannelEndpoint& ep, const Packet& p) override {
    packets.push_back(p);
  }
  void OnGuestSignal(ChannelEndpoint&) override { ++guest_signals; }
  void OnClose(uint32_t) override { endpoint_.reset(); }
  void OnGpadlTeardown(uint32_t relid, uint32_t handle) override {
    torn_down.push_back(handle);
    // The GPADL_TORNDOWN is not out yet when the VSP hears of it.
    EXPECT_TRUE(guest_ == nullptr || guest_->inbox.empty());
  }
  VspOffer offer_;
  std::shared_ptr<ChannelEndpoint> endpoint_;
  std::vector<Packet> packets;
  std::vector<uint32_t> torn_down;
  int guest_signals = 0;
  testing::FakeGuest* guest_ = nullptr;
};

class OwnThreadTest : public ::testing::Test {
 protected:
  OwnThreadTest() : server_(guest_.memory, guest_, {.vp_count = 2}) {
    guest_.server = &server_;
  }
  uint32_t Open() {
    guest_.Connect(kVersionWin10V5_3);
    guest_.RequestOffers();
    auto relid = server_.AddVsp(&vsp_);
    EXPECT_TRUE(relid.ok());
    guest_.Expect<OfferChannel>(kMsgOfferChannel);
    guest_.InitRings(100, 40, 20);
    EXPECT_EQ(guest_.CreateGpadl(*relid, 0xE1E10, FakeGuest::Pages(100, 40))
                  .creation_status,
              0u);
    EXPECT_EQ(guest_.Open(*relid, 0xE1E10, 20, 1).status, 0u);
    vsp_.guest_ = &guest_;
    return *relid;
  }
  FakeGuest guest_;
  // VSPs outlive the server.
  OwnThreadVsp vsp_;
  std::deque<EchoVsp> vsps_;
  VmbusServer server_;
};

TEST_F(OwnThreadTest, TheVpThreadOnlySignalsAndTheVspDrainsInBudgets) {
  const uint32_t relid = Open();
  ASSERT_NE(vsp_.endpoint_, nullptr);
  for (uint64_t i = 0; i < 10; ++i) {
    std::vector<uint8_t> b = {static_cast<uint8_t>(i)};
    ASSERT_TRUE(guest_.out->Write(kPacketDataInband, 0, i, b).has_value());
  }
  EXPECT_EQ(
      server_.OnSignalEvent(0, VmbusServer::ConnectionIdForRelid(relid), 0),
      HvStatus::kSuccess);
  EXPECT_EQ(vsp_.guest_signals, 1);
  EXPECT_TRUE(vsp_.packets.empty()) << "nothing drained on the VP thread";
  auto more = vsp_.endpoint_->Drain(vsp_, 4);
  ASSERT_TRUE(more.ok()) << more.status();
  EXPECT_TRUE(*more);
  EXPECT_EQ(vsp_.packets.size(), 4u);
  // Interrupts stay masked while the VSP still has packets to take.
  EXPECT_EQ(guest_.out->header()->interrupt_mask, 1u);
  more = vsp_.endpoint_->Drain(vsp_, 100);
  ASSERT_TRUE(more.ok());
  EXPECT_FALSE(*more);
  ASSERT_EQ(vsp_.packets.size(), 10u);
  EXPECT_EQ(vsp_.packets[9].trans_id, 9u);
  EXPECT_EQ(guest_.out->header()->interrupt_mask, 0u);
  EXPECT_EQ(guest_.out->header()->read_index,
            guest_.out->header()->write_index);
  // Sends with a header extension arrive with it.
  std::vector<uint8_t> ext(8, 0xEE), payload = {1, 2, 3};
  auto sent =
      vsp_.endpoint_->Send(kPacketDataUsingXferPages, 1, 42, ext, payload);
  ASSERT_TRUE(sent.ok() && sent->written);
  auto got = guest_.in->Read();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->type, kPacketDataUsingXferPages);
  EXPECT_EQ(got->extension, ext);
  EXPECT_EQ(got->data[0], 1);
}

TEST_F(OwnThreadTest, GpaDirectPacketsResolveThroughTheEndpoint) {
  Open();
  // Linux's vmbus_sendpacket_mpb_desc: {reserved, count, {len, offset, pfn}}.
  std::vector<uint8_t> ext(24);
  const uint32_t one = 1, len = 100, offset = 16;
  const uint64_t pfn = 300;
  std::memcpy(ext.data() + 4, &one, 4);
  std::memcpy(ext.data() + 8, &len, 4);
  std::memcpy(ext.data() + 12, &offset, 4);
  std::memcpy(ext.data() + 16, &pfn, 8);
  std::memset(guest_.memory.base() + 300 * kPageSize + 16, 0x5A, 100);
  std::vector<uint8_t> msg(40, 0);
  ASSERT_TRUE(guest_.out
                  ->Write(kPacketDataUsingGpaDirect,
                          kPacketFlagCompletionRequested, 5, ext, msg)
                  .has_value());
  ASSERT_TRUE(vsp_.endpoint_->Drain(vsp_, 10).ok());
  ASSERT_EQ(vsp_.packets.size(), 1u);
  const Packet& p = vsp_.packets[0];
  EXPECT_EQ(p.data().size(), 40u);
  auto ranges =
      ParseGpaDirect(p.header_extension(), vsp_.endpoint_->memory(), 1 << 20);
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  auto scatter = ResolveGpaRanges(*ranges, vsp_.endpoint_->memory());
  ASSERT_TRUE(scatter.ok());
  std::vector<uint8_t> bytes;
  scatter->AppendTo(bytes);
  EXPECT_EQ(bytes, std::vector<uint8_t>(100, 0x5A));
}

TEST_F(OwnThreadTest, BufferGpadlsAreMappedAndTheirTeardownIsTold) {
  const uint32_t relid = Open();
  // netvsc's receive buffer: a GPADL of its own on the channel.
  ASSERT_EQ(guest_.CreateGpadl(relid, 0xE1E11, FakeGuest::Pages(200, 64))
                .creation_status,
            0u);
  auto mapped = vsp_.endpoint_->MapGpadl(0xE1E11);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ(mapped->size, 64u * kPageSize);
  ASSERT_EQ(mapped->pages.size(), 64u);
  EXPECT_EQ(mapped->pages[3], guest_.memory.base() + 203 * kPageSize);
  // The ring is not a buffer; unknown handles are not found.
  EXPECT_EQ(vsp_.endpoint_->MapGpadl(0xE1E10).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(vsp_.endpoint_->MapGpadl(0x1234).status().code(),
            absl::StatusCode::kNotFound);
  // Another channel's GPADL is not this channel's.
  EchoVsp& other = vsps_.emplace_back(9);
  auto other_relid = server_.AddVsp(&other);
  ASSERT_TRUE(other_relid.ok());
  guest_.Expect<OfferChannel>(kMsgOfferChannel);
  ASSERT_EQ(guest_.CreateGpadl(*other_relid, 0xE1E12, FakeGuest::Pages(300, 4))
                .creation_status,
            0u);
  EXPECT_EQ(vsp_.endpoint_->MapGpadl(0xE1E12).status().code(),
            absl::StatusCode::kNotFound);
  // Teardown: the VSP hears first, then the guest gets GPADL_TORNDOWN.
  auto teardown = MakeMessage<GpadlTeardown>(kMsgGpadlTeardown);
  teardown.child_relid = relid;
  teardown.gpadl = 0xE1E11;
  guest_.Send(teardown);
  EXPECT_EQ(vsp_.torn_down, std::vector<uint32_t>{0xE1E11});
  EXPECT_EQ(guest_.Expect<GpadlTorndown>(kMsgGpadlTorndown).gpadl, 0xE1E11u);
  // A GPADL never mapped is torn down without telling the VSP.
  teardown.child_relid = *other_relid;
  teardown.gpadl = 0xE1E12;
  guest_.Send(teardown);
  guest_.Expect<GpadlTorndown>(kMsgGpadlTorndown);
  EXPECT_EQ(vsp_.torn_down.size(), 1u);
  // After close the endpoint maps nothing and drains nothing.
  std::shared_ptr<ChannelEndpoint> ep = vsp_.endpoint_;
  auto close = MakeMessage<CloseChannel>(kMsgCloseChannel);
  close.child_relid = relid;
  guest_.Send(close);
  EXPECT_FALSE(ep->MapGpadl(0xE1E11).ok());
  auto drained = ep->Drain(vsp_, 10);
  ASSERT_TRUE(drained.ok());
  EXPECT_FALSE(*drained);
}

}  // namespace
}  // namespace vmbus
