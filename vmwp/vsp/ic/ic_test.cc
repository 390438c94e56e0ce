// Host IC logic against byte images laid out as Linux's hv_utils reads and
// writes them (offsets from include/linux/hyperv.h and uapi/linux/hyperv.h),
// with the guest's answers built the way hv_util.c / hv_kvp.c build them.

#include <cstring>

#include "gtest/gtest.h"
#include "vmwp/vsp/ic/heartbeat.h"
#include "vmwp/vsp/ic/ic_framework.h"
#include "vmwp/vsp/ic/kvp.h"
#include "vmwp/vsp/ic/shutdown.h"
#include "vmwp/vsp/ic/timesync.h"
#include "vmwp/vsp/ic/utf16.h"

namespace vsp::ic {
namespace {

uint16_t U16(const std::vector<uint8_t>& b, size_t at) {
  return static_cast<uint16_t>(b[at] | (b[at + 1] << 8));
}
uint32_t U32(const std::vector<uint8_t>& b, size_t at) {
  uint32_t v;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}
uint64_t U64(const std::vector<uint8_t>& b, size_t at) {
  uint64_t v;
  std::memcpy(&v, b.data() + at, 8);
  return v;
}
void Put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  std::memcpy(b.data() + at, &v, 4);
}

// Offsets of the Linux layout: vmbuspipe_hdr (8) then icmsg_hdr.
constexpr size_t kIcMsgType = 8 + 4;
constexpr size_t kIcMsgSize = 8 + 10;
constexpr size_t kIcStatus = 8 + 12;
constexpr size_t kIcFlags = 8 + 17;
constexpr size_t kBody = 28;

// What hv_utils does to every request before sending it back.
void GuestRespond(std::vector<uint8_t>& b, uint32_t status = kHvSOk) {
  Put32(b, kIcStatus, status);
  b[kIcFlags] = kIcFlagTransaction | kIcFlagResponse;
}

// vmbus_prep_negotiate_resp: the first of the guest's versions (newest first)
// that the host offered, for framework and for service.
void GuestNegotiate(std::vector<uint8_t>& b,
                    std::span<const IcVersion> guest_fw,
                    std::span<const IcVersion> guest_srv) {
  uint16_t fw_count = U16(b, kBody), msg_count = U16(b, kBody + 2);
  auto host = [&](size_t i) {
    return IcVersion{U16(b, kBody + 8 + 4 * i), U16(b, kBody + 10 + 4 * i)};
  };
  std::optional<IcVersion> fw, srv;
  for (IcVersion g : guest_fw) {
    for (size_t j = 0; j < fw_count && !fw; ++j) {
      if (host(j) == g) fw = g;
    }
  }
  for (IcVersion g : guest_srv) {
    for (size_t j = 0; j < msg_count && !srv; ++j) {
      if (host(fw_count + j) == g) srv = g;
    }
  }
  b[kIcMsgSize] = 0x10;
  bool ok = fw && srv;
  b[kBody] = ok;
  b[kBody + 2] = ok;
  IcVersion picked[2] = {fw.value_or(IcVersion{fw_count, 0}),
                         srv.value_or(IcVersion{msg_count, 0})};
  std::memcpy(b.data() + kBody + 8, picked, sizeof(picked));
  GuestRespond(b);
}

TEST(IcFrameworkTest, NegotiateLayoutAndLinuxAnswer) {
  std::vector<uint8_t> m =
      BuildNegotiate(kFrameworkVersions, kTimeSyncVersions);
  ASSERT_EQ(m.size(), 28u + 8 + 5 * 4);
  EXPECT_EQ(U32(m, 4), m.size() - 8);  // pipe msgsize
  EXPECT_EQ(U16(m, kIcMsgType), kIcNegotiate);
  EXPECT_EQ(m[kIcFlags], kIcFlagTransaction | kIcFlagRequest);
  EXPECT_EQ(U16(m, kBody), 2);
  EXPECT_EQ(U16(m, kBody + 2), 3);
  EXPECT_EQ(U16(m, kBody + 8), 3);      // framework 3.0 first
  EXPECT_EQ(U16(m, kBody + 8 + 8), 4);  // then time sync 4.0

  // A Linux guest that only knows time sync 3.0 and framework 3.0.
  const IcVersion old_fw[] = {{3, 0}};
  const IcVersion old_ts[] = {{3, 0}, {1, 0}};
  GuestNegotiate(m, old_fw, old_ts);
  auto v = ParseNegotiateResponse(m, kFrameworkVersions, kTimeSyncVersions);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->framework, (IcVersion{3, 0}));
  EXPECT_EQ(v->message, (IcVersion{3, 0}));

  // No common version.
  m = BuildNegotiate(kFrameworkVersions, kHeartbeatVersions);
  const IcVersion alien[] = {{9, 9}};
  GuestNegotiate(m, kFrameworkVersions, alien);
  EXPECT_EQ(ParseNegotiateResponse(m, kFrameworkVersions, kHeartbeatVersions)
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(IcFrameworkTest, RejectsMalformedResponses) {
  std::vector<uint8_t> m = BuildNegotiate(kFrameworkVersions, kKvpVersions);
  // Not flagged as a response.
  EXPECT_FALSE(ParseIcResponse(m, kIcNegotiate).ok());
  GuestNegotiate(m, kFrameworkVersions, kKvpVersions);
  EXPECT_FALSE(ParseIcResponse(m, kIcHeartbeat).ok());  // wrong type
  std::vector<uint8_t> shorter(m.begin(), m.begin() + 27);
  EXPECT_FALSE(ParseIcResponse(shorter, kIcNegotiate).ok());
  // A version the host never offered.
  m[kBody + 8] = 7;
  EXPECT_FALSE(
      ParseNegotiateResponse(m, kFrameworkVersions, kKvpVersions).ok());
  // Truncated body.
  std::vector<uint8_t> cut(m.begin(), m.begin() + kBody + 10);
  EXPECT_FALSE(
      ParseNegotiateResponse(cut, kFrameworkVersions, kKvpVersions).ok());
}

TEST(HeartbeatTest, TracksSequenceAndStatus) {
  HeartbeatMonitor hb({absl::Seconds(1), absl::Seconds(5)});
  const IcVersions v{{3, 0}, {3, 0}};
  absl::Time t = absl::FromUnixSeconds(1000);
  EXPECT_EQ(hb.Status(t), HeartbeatStatus::kNoContact);
  auto req = hb.MaybeRequest(v, t);
  ASSERT_TRUE(req.has_value());
  EXPECT_EQ(req->size(), 28u + 40);
  EXPECT_EQ(U16(*req, kIcMsgType), kIcHeartbeat);
  EXPECT_FALSE(hb.MaybeRequest(v, t + absl::Milliseconds(500)).has_value());
  // heartbeat_onchannelcallback: seq_num += 1, flags, send back.
  uint64_t seq = U64(*req, kBody);
  std::vector<uint8_t> answer = *req;
  uint64_t next = seq + 1;
  std::memcpy(answer.data() + kBody, &next, 8);
  GuestRespond(answer);
  ASSERT_TRUE(hb.OnResponse(answer, t + absl::Milliseconds(10)).ok());
  EXPECT_EQ(hb.Status(t + absl::Seconds(1)), HeartbeatStatus::kOk);
  EXPECT_EQ(hb.last_sequence(), next);
  // Replaying the same answer does not count.
  EXPECT_FALSE(hb.OnResponse(answer, t + absl::Seconds(2)).ok());
  // An answer that did not add one.
  auto req2 = hb.MaybeRequest(v, t + absl::Seconds(2));
  std::vector<uint8_t> wrong = *req2;
  GuestRespond(wrong);
  EXPECT_FALSE(hb.OnResponse(wrong, t + absl::Seconds(2)).ok());
  EXPECT_EQ(hb.Status(t + absl::Seconds(5)), HeartbeatStatus::kOk);
  EXPECT_EQ(hb.Status(t + absl::Seconds(6)), HeartbeatStatus::kLost);
}

TEST(HeartbeatTest, AGuestSlowerThanTheIntervalIsStillAlive) {
  // Every answer arrives after the next request went out (round trip 1.5 s,
  // interval 1 s): each answers a request sent after the one last answered.
  HeartbeatMonitor hb({absl::Seconds(1), absl::Seconds(5)});
  const IcVersions v{{3, 0}, {3, 0}};
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  std::vector<std::vector<uint8_t>> sent;
  auto answer = [](std::vector<uint8_t> m, uint64_t add = 1) {
    const uint64_t next = U64(m, kBody) + add;
    std::memcpy(m.data() + kBody, &next, 8);
    GuestRespond(m);
    return m;
  };
  for (int i = 0; i < 6; ++i) {
    auto req = hb.MaybeRequest(v, t0 + absl::Seconds(i));
    ASSERT_TRUE(req.has_value()) << i;
    sent.push_back(*req);
    if (i >= 1) {
      EXPECT_TRUE(hb.OnResponse(answer(sent[i - 1]),
                                t0 + absl::Seconds(i) + absl::Milliseconds(500))
                      .ok())
          << "late answer to request " << i - 1;
    }
  }
  EXPECT_EQ(hb.Status(t0 + absl::Seconds(6)), HeartbeatStatus::kOk);
  EXPECT_EQ(hb.last_sequence(), U64(sent[4], kBody) + 1);
  // Refused: a replay of an answer already counted, an answer to a request
  // never sent, and one without the +1.
  EXPECT_FALSE(hb.OnResponse(answer(sent[4]), t0 + absl::Seconds(6)).ok());
  EXPECT_FALSE(hb.OnResponse(answer(sent[5], 3), t0 + absl::Seconds(6)).ok());
  EXPECT_FALSE(hb.OnResponse(answer(sent[5], 0), t0 + absl::Seconds(6)).ok());
  EXPECT_TRUE(hb.OnResponse(answer(sent[5]), t0 + absl::Seconds(6)).ok());
  // With nothing outstanding any answer is refused.
  EXPECT_FALSE(hb.OnResponse(answer(sent[5]), t0 + absl::Seconds(6)).ok());
}

TEST(ShutdownTest, FlagsAndAnswers) {
  const IcVersions v{{3, 0}, {3, 2}};
  ShutdownRequest r;
  r.kind = ShutdownKind::kRestart;
  r.force = true;
  r.reason_code = 7;
  r.timeout_seconds = 30;
  r.message = "bye";
  std::vector<uint8_t> m = BuildShutdownRequest(r, v);
  ASSERT_EQ(m.size(), 28u + 2060);
  EXPECT_EQ(U32(m, kBody), 7u);
  EXPECT_EQ(U32(m, kBody + 4), 30u);
  EXPECT_EQ(U32(m, kBody + 8), 3u);  // restart | force
  EXPECT_EQ(m[kBody + 12], 'b');
  EXPECT_EQ(m[kBody + 13], 0);  // UTF-16LE
  GuestRespond(m);
  EXPECT_TRUE(ParseShutdownResponse(m).ok());
  // Hibernation refused: hv_utils answers HV_E_FAIL.
  r.kind = ShutdownKind::kHibernate;
  m = BuildShutdownRequest(r, v);
  GuestRespond(m, kHvEFail);
  EXPECT_EQ(ParseShutdownResponse(m).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(TimeSyncTest, WindowsTimeAndVersions) {
  EXPECT_EQ(ToWindowsTime(absl::UnixEpoch()), kWindowsEpochDelta);
  absl::Time t = absl::FromUnixSeconds(1700000000) + absl::Nanoseconds(1234);
  EXPECT_EQ(ToWindowsTime(t), kWindowsEpochDelta + 17000000000000000ull + 12);
  EXPECT_EQ(FromWindowsTime(ToWindowsTime(t)), t - absl::Nanoseconds(34));
  std::vector<uint8_t> v4 =
      BuildTimeSample(t, 5555, kTimeSyncFlagSync, {{3, 0}, {4, 0}});
  ASSERT_EQ(v4.size(), 28u + 22);
  EXPECT_EQ(U64(v4, kBody), ToWindowsTime(t));
  EXPECT_EQ(U64(v4, kBody + 8), 5555u);  // vmreferencetime
  EXPECT_EQ(v4[kBody + 16], kTimeSyncFlagSync);
  std::vector<uint8_t> v3 =
      BuildTimeSample(t, 5555, kTimeSyncFlagSample, {{3, 0}, {3, 0}});
  ASSERT_EQ(v3.size(), 28u + 25);
  EXPECT_EQ(v3[kBody + 24], kTimeSyncFlagSample);
  GuestRespond(v3);
  EXPECT_TRUE(ParseTimeSyncResponse(v3).ok());
}

// hv_kvp_msg offsets after the IC headers.
constexpr size_t kKvpOp = kBody, kKvpPool = kBody + 1;
constexpr size_t kKvpValueType = kBody + 4, kKvpKeySize = kBody + 8;
constexpr size_t kKvpValueSize = kBody + 12, kKvpKey = kBody + 16;
constexpr size_t kKvpValue = kKvpKey + 512;

// kvp_respond_to_host for GET/ENUMERATE: UTF-16 key and value, REG_SZ.
void GuestKvpAnswer(std::vector<uint8_t>& m, const std::string& key,
                    const std::string& value, size_t base) {
  Put32(m, base + 0, kRegSz);
  Put32(m, base + 4,
        static_cast<uint32_t>(EncodeUtf16(key, m.data() + base + 12, 512)));
  Put32(m, base + 8,
        static_cast<uint32_t>(
            EncodeUtf16(value, m.data() + base + 12 + 512, 2048)));
  GuestRespond(m);
}

TEST(KvpTest, SetLayout) {
  auto m = BuildKvpRequest(
      {KvpOperation::kSet, KvpPool::kExternal, "Name", "vm\xc3\xa9", 0},
      {{3, 0}, {4, 0}});
  ASSERT_TRUE(m.ok());
  ASSERT_EQ(m->size(), 28u + 7430);
  EXPECT_EQ((*m)[kKvpOp], 1);
  EXPECT_EQ((*m)[kKvpPool], 0);
  EXPECT_EQ(U32(*m, kKvpValueType), kRegSz);
  EXPECT_EQ(U32(*m, kKvpKeySize), 10u);  // "Name" + NUL in UTF-16
  EXPECT_EQ(U32(*m, kKvpValueSize), 8u);
  EXPECT_EQ((*m)[kKvpKey], 'N');
  EXPECT_EQ((*m)[kKvpValue + 4], 0xe9);  // U+00E9
  EXPECT_FALSE(BuildKvpRequest({KvpOperation::kSet, KvpPool::kExternal,
                                std::string(300, 'k'), "v", 0},
                               {})
                   .ok());
  EXPECT_FALSE(BuildKvpRequest({KvpOperation::kSet, KvpPool::kExternal, "k",
                                std::string(1100, 'v'), 0},
                               {})
                   .ok());
}

TEST(KvpTest, ScansTheGuestsIntrinsicPool) {
  const IcVersions v{{3, 0}, {4, 0}};
  const std::vector<std::pair<std::string, std::string>> items = {
      {"FullyQualifiedDomainName", "web1.example"},
      {"OSName", "Debian GNU/Linux"},
      {"NetworkAddressIPv4", "10.0.0.2"}};
  KvpExchange kvp;
  kvp.ScanPool(KvpPool::kAuto);
  for (size_t i = 0;; ++i) {
    auto m = kvp.NextMessage(v);
    ASSERT_TRUE(m.ok() && m->has_value());
    std::vector<uint8_t> b = **m;
    EXPECT_EQ(b[kKvpOp], 3);
    EXPECT_EQ(b[kKvpPool], 2);
    EXPECT_EQ(U32(b, kBody + 4), i);  // enumerate index
    EXPECT_TRUE(kvp.busy());
    auto none = kvp.NextMessage(v);  // one transaction at a time
    EXPECT_FALSE(none->has_value());
    if (i == items.size()) {
      GuestRespond(b, kHvSCont);  // no more items
      auto r = kvp.OnResponse(b);
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(r->status, kHvSCont);
      break;
    }
    GuestKvpAnswer(b, items[i].first, items[i].second, kBody + 8);
    auto r = kvp.OnResponse(b);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->key, items[i].first);
  }
  EXPECT_FALSE(kvp.NextMessage(v)->has_value());
  const auto& pool = kvp.pool(KvpPool::kAuto);
  ASSERT_EQ(pool.size(), 3u);
  EXPECT_EQ(pool.at("OSName"), "Debian GNU/Linux");
}

TEST(KvpTest, RejectsHostileAnswers) {
  const IcVersions v{{3, 0}, {4, 0}};
  KvpExchange kvp;
  EXPECT_FALSE(kvp.OnResponse(std::vector<uint8_t>(100)).ok());  // unasked
  kvp.Enqueue({KvpOperation::kGet, KvpPool::kGuest, "k", "", 0});
  std::vector<uint8_t> b = **kvp.NextMessage(v);
  GuestKvpAnswer(b, "k", "v", kBody + 4);
  Put32(b, kBody + 8, 100000);  // key_size past the 512-byte key
  EXPECT_FALSE(kvp.OnResponse(b).ok());
  kvp.Enqueue({KvpOperation::kGet, KvpPool::kGuest, "k", "", 0});
  b = **kvp.NextMessage(v);
  GuestKvpAnswer(b, "k", "v", kBody + 4);
  b[kKvpPool] = 1;
  b[kKvpOp] = 1;  // answers a different operation
  EXPECT_FALSE(kvp.OnResponse(b).ok());
  kvp.Enqueue({KvpOperation::kGet, KvpPool::kGuest, "k", "", 0});
  b = **kvp.NextMessage(v);
  b.resize(40);  // truncated
  GuestRespond(b);
  EXPECT_FALSE(kvp.OnResponse(b).ok());
  EXPECT_FALSE(kvp.busy());
}

TEST(Utf16Test, RoundTripsAndTruncates) {
  uint8_t buf[64];
  std::string s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z";  // a é € 😀 z
  size_t n = EncodeUtf16(s, buf, sizeof(buf));
  EXPECT_EQ(n, 2u * (1 + 1 + 1 + 2 + 1) + 2);
  EXPECT_EQ(DecodeUtf16(std::span<const uint8_t>(buf, n)), s);
  // Never splits a surrogate pair; always NUL-terminated.
  n = EncodeUtf16(s, buf, 10);
  EXPECT_EQ(DecodeUtf16(std::span<const uint8_t>(buf, n)),
            "a\xc3\xa9\xe2\x82\xac");
  // Garbage in, replacement characters out.
  EXPECT_EQ(DecodeUtf16(std::vector<uint8_t>{0x00, 0xD8, 0x41, 0x00}),
            "\xef\xbf\xbd"
            "A");
  n = EncodeUtf16("\xff", buf, sizeof(buf));
  EXPECT_EQ(DecodeUtf16(std::span<const uint8_t>(buf, n)), "\xef\xbf\xbd");
}

}  // namespace
}  // namespace vsp::ic
