// VmbusServer save and restore (issue 14): a second server, with the same
// VSPs registered as for a boot, continues the first one's connection: no
// new offers or negotiation, open channels go on exchanging packets from the
// same ring positions, GPADLs (complete and half-sent) are still there.

#include <cstring>
#include <deque>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmwp/vmbus/saved_state.pb.h"
#include "vmwp/vmbus/server.h"
#include "vmwp/vmbus/test_fake_guest.h"

namespace vmbus {
namespace {

using testing::FakeGuest;
using ::testing::HasSubstr;

// Echoes packets as completions, counts them, and saves the count.
class CountingVsp : public Vsp {
 public:
  explicit CountingVsp(uint32_t n, uint16_t sub_channel = 0) {
    offer_.interface_type =
        Guid::FromFields(0x57164f39, 0x9115, 0x4e78,
                         {0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5, 0x42, 0x2d});
    offer_.interface_instance =
        Guid::FromFields(0x1000 + n, 1, 2, {1, 2, 3, 4, 5, 6, 7, 8});
    offer_.sub_channel_index = sub_channel;
  }
  const VspOffer& offer() const override { return offer_; }
  absl::Status OnOpen(std::shared_ptr<ChannelEndpoint> endpoint,
                      std::span<const uint8_t>) override {
    endpoint_ = std::move(endpoint);
    return absl::OkStatus();
  }
  void OnPacket(ChannelEndpoint& ep, const Packet& p) override {
    ++packets;
    auto r = ep.Send(kPacketCompletion, 0, p.trans_id, p.data());
    EXPECT_TRUE(r.ok() && r->written);
  }
  void OnClose(uint32_t) override { endpoint_.reset(); }
  absl::Status Quiesce(absl::Time) override {
    ++quiesced;
    return quiesce_error;
  }
  void Unquiesce() override { ++unquiesced; }
  absl::StatusOr<std::string> SaveState() override {
    return std::to_string(packets);
  }
  absl::Status RestoreState(std::shared_ptr<ChannelEndpoint> endpoint,
                            std::string_view state) override {
    endpoint_ = std::move(endpoint);
    restored = true;
    return absl::SimpleAtoi(absl::string_view(state.data(), state.size()),
                            &packets)
               ? absl::OkStatus()
               : absl::InvalidArgumentError("bad count");
  }

  VspOffer offer_;
  int packets = 0, quiesced = 0, unquiesced = 0;
  bool restored = false;
  absl::Status quiesce_error;
  std::shared_ptr<ChannelEndpoint> endpoint_;
};

class ServerStateTest : public ::testing::Test {
 protected:
  ServerStateTest() : a_(guest_.memory, guest_, {.vp_count = 2}) {
    guest_.server = &a_;
  }

  // Connect, two channels open (relids 1 and 2), one packet each way on 1.
  void SetUpConnection() {
    for (uint32_t n : {1, 2})
      ASSERT_TRUE(a_.AddVsp(&vsps_a_.emplace_back(n)).ok());
    guest_.Connect(kVersionWin10V5_3);
    std::vector<OfferChannel> offers = guest_.RequestOffers();
    ASSERT_EQ(offers.size(), 2u);
    connection_id_ = offers[0].connection_id;
    guest_.InitRings(100, 40, 20);
    ASSERT_EQ(guest_.CreateGpadl(1, 0xE1E10, FakeGuest::Pages(100, 40))
                  .creation_status,
              0u);
    ASSERT_EQ(guest_.Open(1, 0xE1E10, 20, 7, /*vp=*/1).status, 0u);
    ASSERT_EQ(guest_.CreateGpadl(2, 0xE1E11, FakeGuest::Pages(200, 8))
                  .creation_status,
              0u);
    EXPECT_EQ(Echo(a_, 11), 11u);
  }

  // Sends a packet on channel 1 and returns the completion's id.
  uint64_t Echo(VmbusServer& server, uint64_t id) {
    const std::vector<uint8_t> payload = {1, 2, 3, 4};
    EXPECT_TRUE(guest_.out->Write(kPacketDataInband, 1, id, payload));
    EXPECT_EQ(server.OnSignalEvent(0, connection_id_, 0), HvStatus::kSuccess);
    auto reply = guest_.in->Read();
    return reply.has_value() ? reply->trans_id : 0;
  }

  absl::StatusOr<hvstack::saved::VmbusServerState> Save() {
    if (absl::Status s = a_.QuiesceVsps(absl::Now() + absl::Seconds(1));
        !s.ok()) {
      return s;
    }
    absl::StatusOr<hvstack::saved::VmbusServerState> state = a_.SaveState();
    if (!state.ok()) return state;
    std::string bytes;
    EXPECT_TRUE(state->SerializeToString(&bytes));
    hvstack::saved::VmbusServerState loaded;
    EXPECT_TRUE(loaded.ParseFromString(bytes));
    return loaded;
  }

  FakeGuest guest_;
  std::deque<CountingVsp> vsps_a_, vsps_b_;
  VmbusServer a_;
  uint32_t connection_id_ = 0;
};

TEST_F(ServerStateTest, RestoredServerContinuesTheConnection) {
  SetUpConnection();
  // A GPADL half sent: the header with 26 of its 30 pages, no body yet.
  {
    GpadlHeader h{};
    h.header.msgtype = kMsgGpadlHeader;
    h.child_relid = 2;
    h.gpadl = 0xE1E12;
    h.range_buflen = 8 + 30 * 8;
    h.rangecount = 1;
    std::vector<uint8_t> m(sizeof(h) + 8 + 26 * 8);
    std::memcpy(m.data(), &h, sizeof(h));
    GpaRangeHeader r{30 * kPageSize, 0};
    std::memcpy(m.data() + sizeof(h), &r, 8);
    std::vector<uint64_t> pfns = FakeGuest::Pages(300, 30);
    std::memcpy(m.data() + sizeof(h) + 8, pfns.data(), 26 * 8);
    a_.OnPostMessage(0, kMessageConnectionId, kVmbusMessageType, m);
    EXPECT_TRUE(guest_.inbox.empty());
  }
  absl::StatusOr<hvstack::saved::VmbusServerState> state = Save();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(vsps_a_[0].quiesced, 1);
  EXPECT_EQ(state->protocol_version(), kVersionWin10V5_3);
  EXPECT_EQ(state->gpadls_size(), 2);
  EXPECT_EQ(state->pending_gpadls_size(), 1);
  ASSERT_EQ(state->channels_size(), 2);
  EXPECT_EQ(state->channels(0).state(),
            hvstack::saved::VmbusChannelState::OPEN);
  EXPECT_EQ(state->channels(0).target_vp(), 1u);
  EXPECT_EQ(state->channels(0).vsp_state(), "1");

  VmbusServer b(guest_.memory, guest_, {.vp_count = 2});
  for (uint32_t n : {1, 2})
    ASSERT_TRUE(b.AddVsp(&vsps_b_.emplace_back(n)).ok());
  ASSERT_TRUE(b.RestoreState(*state).ok());
  guest_.server = &b;
  EXPECT_TRUE(guest_.inbox.empty()) << "no offers, no negotiation";
  EXPECT_EQ(b.version(), kVersionWin10V5_3);
  EXPECT_TRUE(b.channel_open(1));
  EXPECT_FALSE(b.channel_open(2));
  EXPECT_EQ(b.gpadl_count(), 2u);
  EXPECT_TRUE(vsps_b_[0].restored);
  EXPECT_EQ(vsps_b_[0].packets, 1);
  // The channel goes on where it was, signalling the same VP.
  guest_.signals.clear();
  EXPECT_EQ(Echo(b, 12), 12u);
  EXPECT_EQ(vsps_b_[0].packets, 2);
  ASSERT_FALSE(guest_.signals.empty());
  EXPECT_EQ(guest_.signals[0].first, 1u);
  // The half-sent GPADL completes with its last body.
  {
    GpadlBody body{};
    body.header.msgtype = kMsgGpadlBody;
    body.gpadl = 0xE1E12;
    std::vector<uint8_t> m(sizeof(body) + 4 * 8);
    std::memcpy(m.data(), &body, sizeof(body));
    std::vector<uint64_t> rest = FakeGuest::Pages(326, 4);
    std::memcpy(m.data() + sizeof(body), rest.data(), 4 * 8);
    b.OnPostMessage(0, kMessageConnectionId, kVmbusMessageType, m);
    EXPECT_EQ(guest_.Expect<GpadlCreated>(kMsgGpadlCreated).creation_status,
              0u);
    EXPECT_EQ(b.gpadl_count(), 3u);
  }
  // Channel 2 opens normally on its saved GPADL.
  guest_.InitRings(200, 8, 4);
  EXPECT_EQ(guest_.Open(2, 0xE1E11, 4, 8).status, 0u);
  // An offer re-request is a protocol error, as it would have been.
  guest_.Send(MakeMessage<RequestOffers>(kMsgRequestOffers));
  EXPECT_TRUE(guest_.inbox.empty());
}

TEST_F(ServerStateTest, ChangedDevicesAreNamed) {
  SetUpConnection();
  absl::StatusOr<hvstack::saved::VmbusServerState> state = Save();
  ASSERT_TRUE(state.ok());
  {
    VmbusServer b(guest_.memory, guest_, {.vp_count = 2});
    ASSERT_TRUE(b.AddVsp(&vsps_b_.emplace_back(1)).ok());
    absl::Status s = b.RestoreState(*state);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(s.message(), HasSubstr("the saved VM had VMBus channel 2"));
  }
  {
    VmbusServer b(guest_.memory, guest_, {.vp_count = 2});
    for (uint32_t n : {1, 2, 3})
      ASSERT_TRUE(b.AddVsp(&vsps_b_.emplace_back(n)).ok());
    EXPECT_THAT(b.RestoreState(*state).message(),
                HasSubstr("which the saved VM did not have"));
  }
  {
    VmbusServer b(guest_.memory, guest_, {.vp_count = 2});
    for (uint32_t n : {5, 2})
      ASSERT_TRUE(b.AddVsp(&vsps_b_.emplace_back(n)).ok());
    EXPECT_THAT(b.RestoreState(*state).message(),
                HasSubstr("another device at VMBus relid 1"));
  }
}

TEST_F(ServerStateTest, BadStateAndFailingVspsAreRefused) {
  SetUpConnection();
  vsps_a_[1].quiesce_error = absl::DeadlineExceededError("I/O in flight");
  absl::Status q = a_.QuiesceVsps(absl::Now());
  EXPECT_THAT(q.message(), HasSubstr("channel 2"));
  EXPECT_THAT(q.message(), HasSubstr("I/O in flight"));
  EXPECT_EQ(vsps_a_[0].unquiesced, 1);
  vsps_a_[1].quiesce_error = absl::OkStatus();
  absl::StatusOr<hvstack::saved::VmbusServerState> good = Save();
  ASSERT_TRUE(good.ok());

  auto restore = [&](const hvstack::saved::VmbusServerState& s) {
    VmbusServer b(guest_.memory, guest_, {.vp_count = 2});
    for (uint32_t n : {1, 2})
      EXPECT_TRUE(b.AddVsp(&vsps_b_.emplace_back(n)).ok());
    return b.RestoreState(s);
  };
  hvstack::saved::VmbusServerState s = *good;
  s.set_version(5);
  EXPECT_THAT(restore(s).message(), HasSubstr("format version 5"));
  s = *good;
  s.mutable_channels(0)->set_in_read_index(3);
  EXPECT_THAT(restore(s).message(), HasSubstr("not 8-byte aligned"));
  s = *good;
  s.mutable_gpadls(0)->mutable_ranges(0)->set_pfns(0, 1u << 30);
  EXPECT_THAT(restore(s).message(), HasSubstr("is not RAM"));
  s = *good;
  s.mutable_channels(0)->set_target_vp(9);
  EXPECT_THAT(restore(s).message(), HasSubstr("target vp 9"));
  s = *good;
  s.mutable_channels(0)->set_vsp_state("garbage");
  EXPECT_THAT(restore(s).message(), HasSubstr("cannot restore its state"));
  s = *good;
  s.set_protocol_version(0x00090009);
  EXPECT_THAT(restore(s).message(), HasSubstr("9.9"));
}

}  // namespace
}  // namespace vmbus
