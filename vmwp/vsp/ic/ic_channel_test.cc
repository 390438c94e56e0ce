// The IC channels end to end: a VmbusServer, the four IC VSPs, and a guest
// that answers as Linux's hv_utils does (hv_util.c, hv_kvp.c), over real
// rings in guest memory.

#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmwp/vmbus/saved_state.pb.h"
#include "vmwp/vmbus/test_fake_guest.h"
#include "vmwp/vsp/ic/ic_services.h"
#include "vmwp/vsp/ic/utf16.h"

namespace vsp::ic {
namespace {

using vmbus::testing::FakeGuest;
using vmbus::testing::GuestRing;

// hv_utils' answer to one IC request, in place (as it reuses its buffer).
void HvUtilsAnswer(
    std::vector<uint8_t>& b,
    const std::vector<std::pair<std::string, std::string>>& intrinsic) {
  IcMsgHeader h;
  std::memcpy(&h, b.data() + 8, sizeof(h));
  uint8_t* body = b.data() + kIcHeadersSize;
  h.status = kHvSOk;
  switch (h.icmsgtype) {
    case kIcNegotiate: {
      // vmbus_prep_negotiate_resp with hv_utils' newest versions: take the
      // first of each list (the host offers the same ones, newest first).
      IcNegotiate n;
      std::memcpy(&n, body, sizeof(n));
      IcVersion fw, srv;
      std::memcpy(&fw, body + 8, 4);
      std::memcpy(&srv, body + 8 + 4 * n.icframe_vercnt, 4);
      n.icframe_vercnt = n.icmsg_vercnt = 1;
      std::memcpy(body, &n, sizeof(n));
      std::memcpy(body + 8, &fw, 4);
      std::memcpy(body + 12, &srv, 4);
      h.icmsgsize = 0x10;
      break;
    }
    case kIcHeartbeat: {
      uint64_t seq;
      std::memcpy(&seq, body, 8);
      ++seq;
      std::memcpy(body, &seq, 8);
      break;
    }
    case kIcShutdown: {
      uint32_t flags;
      std::memcpy(&flags, body + 8, 4);
      h.status = flags <= 3 ? kHvSOk : kHvEFail;  // no hibernation here
      break;
    }
    case kIcTimeSync:
      break;
    case kIcKvpExchange: {
      KvpHeader k;
      std::memcpy(&k, body, sizeof(k));
      if (k.operation == static_cast<uint8_t>(KvpOperation::kEnumerate)) {
        uint32_t index;
        std::memcpy(&index, body + 4, 4);
        if (k.pool != static_cast<uint8_t>(KvpPool::kAuto) ||
            index >= intrinsic.size()) {
          h.status = kHvSCont;
          break;
        }
        uint8_t* v = body + 8;
        uint32_t type = kRegSz;
        std::memcpy(v, &type, 4);
        uint32_t ks = static_cast<uint32_t>(
            EncodeUtf16(intrinsic[index].first, v + 12, 512));
        uint32_t vs = static_cast<uint32_t>(
            EncodeUtf16(intrinsic[index].second, v + 12 + 512, 2048));
        std::memcpy(v + 4, &ks, 4);
        std::memcpy(v + 8, &vs, 4);
      }
      break;
    }
  }
  h.icflags = kIcFlagTransaction | kIcFlagResponse;
  std::memcpy(b.data() + 8, &h, sizeof(h));
}

class IcChannelTest : public ::testing::Test {
 protected:
  IcChannelTest()
      : heartbeat_(Instance(1), {absl::Seconds(1), absl::Seconds(5)},
                   [this] { return now_; }),
        shutdown_(Instance(2)),
        timesync_(
            Instance(3), [] { return uint64_t{123456}; },
            [this] { return now_; }),
        kvp_(Instance(4)),
        server_(guest_.memory, guest_, {.vp_count = 1}) {
    guest_.server = &server_;
    for (vmbus::Vsp* v : std::initializer_list<vmbus::Vsp*>{
             &heartbeat_, &shutdown_, &timesync_, &kvp_}) {
      EXPECT_TRUE(server_.AddVsp(v).ok());
    }
    guest_.Connect(vmbus::kVersionWin10V5_3);
    for (const vmbus::OfferChannel& o : guest_.RequestOffers()) {
      offers_[o.child_relid] = o;
    }
  }
  static vmbus::Guid Instance(uint32_t n) {
    return vmbus::Guid::FromFields(0xabc00000 + n, 0, 0, {});
  }

  // vmbus_open for `relid` with 4 + 4 pages (hv_utils' 3-page rings + header).
  void Open(uint32_t relid) {
    const uint64_t first = 100 + relid * 8;
    guest_.InitRings(first, 8, 4);
    ASSERT_EQ(
        guest_.CreateGpadl(relid, 0x100 + relid, FakeGuest::Pages(first, 8))
            .creation_status,
        0u);
    ASSERT_EQ(guest_.Open(relid, 0x100 + relid, 4, relid).status, 0u);
    rings_.insert_or_assign(relid, std::make_pair(*guest_.out, *guest_.in));
  }

  // The guest's util callback: answer everything in the inbound ring.
  int Answer(uint32_t relid) {
    auto& [out, in] = rings_.at(relid);
    int answered = 0;
    while (auto p = in.Read()) {
      EXPECT_EQ(p->type, vmbus::kPacketDataInband);
      EXPECT_EQ(p->flags, vmbus::kPacketFlagCompletionRequested);
      HvUtilsAnswer(p->data, intrinsic_);
      EXPECT_TRUE(out.Write(vmbus::kPacketDataInband, 0, p->trans_id, p->data)
                      .has_value());
      ++answered;
    }
    active_->OnSignalEvent(0, offers_.at(relid).connection_id, 0);
    return answered;
  }

  absl::Time now_ = absl::FromUnixSeconds(1700000000);
  std::vector<std::pair<std::string, std::string>> intrinsic_ = {
      {"FullyQualifiedDomainName", "web1"}, {"OSName", "Linux"}};
  FakeGuest guest_;
  HeartbeatIc heartbeat_;
  ShutdownIc shutdown_;
  TimeSyncIc timesync_;
  KvpIc kvp_;
  vmbus::VmbusServer server_;
  vmbus::VmbusServer* active_ = &server_;
  std::map<uint32_t, vmbus::OfferChannel> offers_;
  std::map<uint32_t, std::pair<GuestRing, GuestRing>> rings_;
};

TEST_F(IcChannelTest, OffersTheFourServicesWithTheirGuids) {
  ASSERT_EQ(offers_.size(), 4u);
  EXPECT_EQ(offers_[1].offer.if_type, HeartbeatGuid());
  EXPECT_EQ(offers_[2].offer.if_type, ShutdownGuid());
  EXPECT_EQ(offers_[3].offer.if_type, TimeSyncGuid());
  EXPECT_EQ(offers_[4].offer.if_type, KvpGuid());
  EXPECT_EQ(offers_[4].offer.if_type.ToString(),
            "a9a0f4e7-5a45-4d96-b827-8a841e8c03e6");
}

TEST_F(IcChannelTest, HeartbeatNegotiatesAndTracksTheGuest) {
  EXPECT_EQ(heartbeat_.status(), HeartbeatStatus::kNoContact);
  EXPECT_FALSE(heartbeat_.Tick().ok() && heartbeat_.negotiated());
  Open(1);
  EXPECT_EQ(Answer(1), 1);  // the negotiation
  ASSERT_TRUE(heartbeat_.negotiated());
  EXPECT_EQ(heartbeat_.versions().message, (IcVersion{3, 0}));
  for (int i = 0; i < 3; ++i) {
    now_ += absl::Seconds(1);
    ASSERT_TRUE(heartbeat_.Tick().ok());
    EXPECT_EQ(Answer(1), 1);
  }
  EXPECT_EQ(heartbeat_.status(), HeartbeatStatus::kOk);
  EXPECT_EQ(heartbeat_.sequence(), 6u);  // 1+1, 3+1, 5+1
  now_ += absl::Seconds(10);             // the guest stops answering
  ASSERT_TRUE(heartbeat_.Tick().ok());
  EXPECT_EQ(heartbeat_.status(), HeartbeatStatus::kLost);
}

TEST_F(IcChannelTest, ShutdownRequestIsAcceptedOrRefused) {
  EXPECT_EQ(shutdown_.Request({}).code(),
            absl::StatusCode::kFailedPrecondition);  // not open yet
  Open(2);
  Answer(2);
  ASSERT_TRUE(shutdown_.negotiated());
  EXPECT_EQ(shutdown_.versions().message, (IcVersion{3, 2}));
  ASSERT_TRUE(shutdown_
                  .Request({.kind = ShutdownKind::kShutdown,
                            .force = true,
                            .reason_code = 0,
                            .timeout_seconds = 30,
                            .message = "vmctl shutdown"})
                  .ok());
  EXPECT_FALSE(shutdown_.last_result().has_value());
  Answer(2);
  ASSERT_TRUE(shutdown_.last_result().has_value());
  EXPECT_TRUE(shutdown_.last_result()->ok());
  ASSERT_TRUE(shutdown_.Request({.kind = ShutdownKind::kHibernate}).ok());
  Answer(2);
  EXPECT_FALSE(shutdown_.last_result()->ok());
}

TEST_F(IcChannelTest, TimeSyncSendsASyncSampleOnNegotiation) {
  Open(3);
  Answer(3);  // negotiation; the host answers with a SYNC sample
  ASSERT_TRUE(timesync_.negotiated());
  EXPECT_EQ(timesync_.versions().message, (IcVersion{4, 0}));
  auto& in = rings_.at(3).second;
  auto sample = in.Read();
  ASSERT_TRUE(sample.has_value());
  TimeSyncRefData d;
  std::memcpy(&d, sample->data.data() + kIcHeadersSize, sizeof(d));
  EXPECT_EQ(d.parenttime, ToWindowsTime(now_));
  EXPECT_EQ(d.vmreferencetime, 123456u);
  EXPECT_EQ(d.flags, kTimeSyncFlagSync);
}

// Linux keeps the newest sample as its PTP clock's base and calls it stale
// after 600 s: the host sends a SAMPLE every 5 s (as Hyper-V and OpenVMM do),
// which hv_utils answers like any time message.
TEST_F(IcChannelTest, TimeSyncSendsASampleEveryFiveSeconds) {
  EXPECT_TRUE(timesync_.Tick().ok());  // not negotiated: nothing to do
  Open(3);
  Answer(3);  // negotiation; the SYNC sample follows
  ASSERT_TRUE(timesync_.negotiated());
  auto& in = rings_.at(3).second;
  ASSERT_TRUE(in.Read().has_value());  // the SYNC sample
  now_ += absl::Seconds(4);
  ASSERT_TRUE(timesync_.Tick().ok());
  EXPECT_FALSE(in.Read().has_value()) << "a sample before 5 s";
  now_ += absl::Seconds(1);
  ASSERT_TRUE(timesync_.Tick().ok());
  auto sample = in.Read();
  ASSERT_TRUE(sample.has_value());
  TimeSyncRefData d;
  std::memcpy(&d, sample->data.data() + kIcHeadersSize, sizeof(d));
  EXPECT_EQ(d.flags, kTimeSyncFlagSample);
  EXPECT_EQ(d.parenttime, ToWindowsTime(now_));
  ASSERT_TRUE(timesync_.Tick().ok());
  EXPECT_FALSE(in.Read().has_value()) << "two samples in the same period";
  // hv_utils answers each one in place; the host counts the answers.
  HvUtilsAnswer(sample->data, {});
  auto& out = rings_.at(3).first;
  ASSERT_TRUE(
      out.Write(vmbus::kPacketDataInband, 0, sample->trans_id, sample->data)
          .has_value());
  server_.OnSignalEvent(0, offers_.at(3).connection_id, 0);
  EXPECT_EQ(timesync_.answered(), 1u);
  now_ += absl::Seconds(5);
  ASSERT_TRUE(timesync_.Tick().ok());
  EXPECT_TRUE(in.Read().has_value());
}

TEST_F(IcChannelTest, KvpScansIntrinsicItemsAndSetsHostItems) {
  Open(4);
  // Negotiation, then one ENUMERATE per item and the one that ends the scan.
  int rounds = 0;
  while (Answer(4) > 0 && rounds < 10) ++rounds;
  EXPECT_EQ(rounds, 1 + 2 + 1);
  auto pool = kvp_.pool(KvpPool::kAuto);
  ASSERT_EQ(pool.size(), 2u);
  EXPECT_EQ(pool["OSName"], "Linux");
  ASSERT_TRUE(kvp_.Enqueue({.op = KvpOperation::kSet,
                            .pool = KvpPool::kExternal,
                            .key = "role",
                            .value = "web"})
                  .ok());
  EXPECT_EQ(Answer(4), 1);
  EXPECT_EQ(kvp_.pool(KvpPool::kExternal).at("role"), "web");
  EXPECT_FALSE(kvp_.busy());
  EXPECT_FALSE(
      kvp_.Enqueue({.op = KvpOperation::kSet, .key = std::string(600, 'x')})
          .ok());
}

TEST_F(IcChannelTest, CloseAndReopenRenegotiates) {
  Open(1);
  Answer(1);
  ASSERT_TRUE(heartbeat_.negotiated());
  auto close = vmbus::MakeMessage<vmbus::CloseChannel>(vmbus::kMsgCloseChannel);
  close.child_relid = 1;
  guest_.Send(close);
  EXPECT_FALSE(heartbeat_.negotiated());
  EXPECT_EQ(heartbeat_.Tick().code(), absl::StatusCode::kOk);  // no-op
  auto teardown =
      vmbus::MakeMessage<vmbus::GpadlTeardown>(vmbus::kMsgGpadlTeardown);
  teardown.child_relid = 1;
  teardown.gpadl = 0x101;
  guest_.Send(teardown);
  guest_.Expect<vmbus::GpadlTorndown>(vmbus::kMsgGpadlTorndown);
  Open(1);
  Answer(1);
  EXPECT_TRUE(heartbeat_.negotiated());
}

// Save/restore (issue 14): a second set of ICs on a second server continues
// with the guest's open, negotiated channels: no negotiation packet, the
// heartbeat sequence goes on, KVP, time sync and shutdown still work.
TEST_F(IcChannelTest, RestoredIcsContinueWithoutRenegotiation) {
  for (uint32_t relid = 1; relid <= 4; ++relid) {
    Open(relid);
    EXPECT_GE(Answer(relid), 1);
    // The time sync sample and the intrinsic KVP scan follow the
    // negotiation.
    while (Answer(relid) != 0) {
    }
  }
  now_ += absl::Seconds(1);
  ASSERT_TRUE(heartbeat_.Tick().ok());
  ASSERT_EQ(Answer(1), 1);
  const uint64_t seq = heartbeat_.sequence();
  ASSERT_EQ(kvp_.pool(KvpPool::kAuto).size(), 2u);

  ASSERT_TRUE(server_.QuiesceVsps(absl::Now() + absl::Seconds(1)).ok());
  absl::StatusOr<hvstack::saved::VmbusServerState> state = server_.SaveState();
  ASSERT_TRUE(state.ok()) << state.status();

  // The VM spent an hour saved: that must not count against the guest.
  now_ += absl::Hours(1);
  HeartbeatIc heartbeat(Instance(1), {absl::Seconds(1), absl::Seconds(5)},
                        [this] { return now_; });
  ShutdownIc shutdown(Instance(2));
  TimeSyncIc timesync(
      Instance(3), [] { return uint64_t{999}; }, [this] { return now_; });
  KvpIc kvp(Instance(4));
  vmbus::VmbusServer b(guest_.memory, guest_, {.vp_count = 1});
  for (vmbus::Vsp* v : std::initializer_list<vmbus::Vsp*>{&heartbeat, &shutdown,
                                                          &timesync, &kvp}) {
    ASSERT_TRUE(b.AddVsp(v).ok());
  }
  ASSERT_TRUE(b.RestoreState(*state).ok());
  guest_.server = &b;
  active_ = &b;
  for (uint32_t relid = 1; relid <= 4; ++relid) {
    EXPECT_FALSE(rings_.at(relid).second.Read().has_value())
        << "relid " << relid << ": nothing sent (no negotiation)";
  }
  EXPECT_TRUE(heartbeat.negotiated() && kvp.negotiated() &&
              timesync.negotiated() && shutdown.negotiated());
  EXPECT_EQ(heartbeat.status(), HeartbeatStatus::kOk);
  EXPECT_EQ(heartbeat.sequence(), seq);
  EXPECT_EQ(kvp.pool(KvpPool::kAuto), kvp_.pool(KvpPool::kAuto));

  now_ += absl::Seconds(1);
  ASSERT_TRUE(heartbeat.Tick().ok());
  EXPECT_EQ(Answer(1), 1);
  EXPECT_GT(heartbeat.sequence(), seq);
  ASSERT_TRUE(timesync.SendSample(kTimeSyncFlagSync).ok());
  EXPECT_EQ(Answer(3), 1);
  EXPECT_EQ(timesync.answered(), timesync_.answered() + 1);
  ASSERT_TRUE(kvp.Enqueue({.op = KvpOperation::kSet,
                           .pool = KvpPool::kExternal,
                           .key = "k",
                           .value = "v"})
                  .ok());
  EXPECT_EQ(Answer(4), 1);
  EXPECT_TRUE(kvp.idle());
  ASSERT_TRUE(shutdown.Request({}).ok());
  EXPECT_EQ(Answer(2), 1);
  ASSERT_TRUE(shutdown.last_result().has_value());
  EXPECT_TRUE(shutdown.last_result()->ok());
}

TEST_F(IcChannelTest, BadIcStateIsRefusedNamingTheIc) {
  Open(1);
  Answer(1);
  ASSERT_TRUE(server_.QuiesceVsps(absl::Now()).ok());
  absl::StatusOr<hvstack::saved::VmbusServerState> state = server_.SaveState();
  ASSERT_TRUE(state.ok());
  auto restore = [&](const hvstack::saved::VmbusServerState& s) {
    HeartbeatIc heartbeat(Instance(1), {}, [this] { return now_; });
    ShutdownIc shutdown(Instance(2));
    TimeSyncIc timesync(Instance(3), [] { return uint64_t{1}; });
    KvpIc kvp(Instance(4));
    vmbus::VmbusServer b(guest_.memory, guest_, {.vp_count = 1});
    for (vmbus::Vsp* v : std::initializer_list<vmbus::Vsp*>{
             &heartbeat, &shutdown, &timesync, &kvp}) {
      EXPECT_TRUE(b.AddVsp(v).ok());
    }
    return b.RestoreState(s);
  };
  hvstack::saved::VmbusServerState s = *state;
  s.mutable_channels(0)->set_vsp_state("\xff\xff garbage");
  EXPECT_THAT(restore(s).message(), ::testing::HasSubstr("heartbeat IC state"));
  s = *state;
  // The kvp channel's bytes under the heartbeat's relid.
  s.mutable_channels(0)->set_vsp_state(state->channels(3).vsp_state());
  EXPECT_THAT(restore(s).message(),
              ::testing::HasSubstr("it belongs to the kvp IC"));
}

}  // namespace
}  // namespace vsp::ic
