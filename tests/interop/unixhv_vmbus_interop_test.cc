// The guest library (guest/unixhv: VMBus rings and IC services), compiled for
// the host, against the host's own implementation of the same wire formats
// (vmwp/vmbus rings, vmwp/vsp/ic messages): each side's output is parsed by
// the other. No KVM; the end-to-end versions are
// tests/integration/enlightened_test.cc and hostile_vmbus_test.cc.
#include <cstring>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "guest/unixhv/ic.h"
#include "guest/unixhv/vmbus_ring.h"
#include "vmwp/vmbus/guest_pages.h"
#include "vmwp/vmbus/ring_buffer.h"
#include "vmwp/vsp/ic/heartbeat.h"
#include "vmwp/vsp/ic/ic_framework.h"
#include "vmwp/vsp/ic/kvp.h"
#include "vmwp/vsp/ic/shutdown.h"
#include "vmwp/vsp/ic/timesync.h"

namespace {

using ::testing::HasSubstr;

std::string console;
void Capture(char c) { console.push_back(c); }

constexpr uint32_t kRingPages = 4;  // header + 3 data pages, as hv_utils

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

class RingInterop : public ::testing::Test {
 protected:
  RingInterop() : memory_(kRingPages) {
    std::vector<uint64_t> pfns;
    for (uint64_t i = 0; i < kRingPages; ++i) pfns.push_back(i);
    pfns_ = pfns;
  }
  vmbus::FlatGuestPages memory_;
  std::vector<uint64_t> pfns_;
};

TEST_F(RingInterop, GuestWritesHostReadsAcrossManyWraps) {
  unixhv::vmbus::Ring guest;
  guest.Init(memory_.base(), kRingPages);
  auto pages = vmbus::RingPages::FromPfns(memory_, pfns_);
  ASSERT_TRUE(pages.ok()) << pages.status();
  auto host = vmbus::RingReader::Create(*std::move(pages));
  ASSERT_TRUE(host.ok()) << host.status();

  // Sizes that are and are not multiples of 8, up to ~1/4 of the ring, so
  // packets straddle the end of the data area in every possible way.
  size_t signals = 0;
  for (uint32_t i = 0; i < 600; ++i) {
    const std::vector<uint8_t> payload = Pattern(1 + (i * 37) % 3000, i);
    bool signal = false;
    ASSERT_TRUE(guest.Write(unixhv::vmbus::kPacketDataInband,
                            unixhv::vmbus::kFlagCompletionRequested, 1000 + i,
                            payload.data(), payload.size(), &signal))
        << "packet " << i;
    signals += signal;
    vmbus::Packet p;
    auto next = host->Next(&p);
    ASSERT_TRUE(next.ok()) << next.status() << " packet " << i;
    ASSERT_TRUE(*next);
    EXPECT_EQ(p.type, vmbus::kPacketDataInband);
    EXPECT_EQ(p.flags, vmbus::kPacketFlagCompletionRequested);
    EXPECT_EQ(p.trans_id, 1000u + i);
    // The host sees the payload padded to 8 bytes, as Linux's reader does.
    ASSERT_GE(p.data().size(), payload.size());
    EXPECT_LT(p.data().size(), payload.size() + 8);
    EXPECT_TRUE(std::equal(payload.begin(), payload.end(), p.data().begin()))
        << "packet " << i;
    ASSERT_TRUE(host->Commit().ok());
  }
  // Every write went into an empty ring with interrupts unmasked: each one
  // must have asked for a signal (a guest that skips it stalls the host).
  EXPECT_EQ(signals, 600u);
}

TEST_F(RingInterop, GuestWriterRefusesToFillTheRingAndSkipsSignals) {
  unixhv::vmbus::Ring guest;
  guest.Init(memory_.base(), kRingPages);
  const std::vector<uint8_t> payload = Pattern(1000, 3);
  bool signal = false;
  int written = 0;
  while (guest.Write(unixhv::vmbus::kPacketDataInband, 0, written,
                     payload.data(), payload.size(), &signal)) {
    EXPECT_EQ(signal, written == 0) << "only the first write finds it empty";
    ++written;
    ASSERT_LT(written, 100);
  }
  // 12 KiB of data, 1024+8 bytes a packet: 11 fit, and the 12th would fill
  // the ring to the last byte, which a writer never does.
  EXPECT_EQ(written, 11);
  // The host masks interrupts while draining: no signal then.
  auto pages = vmbus::RingPages::FromPfns(memory_, pfns_);
  auto host = vmbus::RingReader::Create(*std::move(pages));
  ASSERT_TRUE(host.ok());
  vmbus::Packet p;
  for (int i = 0; i < written; ++i) ASSERT_TRUE(*host->Next(&p));
  ASSERT_TRUE(host->Commit().ok());
  host->BeginDrain();
  ASSERT_TRUE(guest.Write(unixhv::vmbus::kPacketDataInband, 0, 99,
                          payload.data(), payload.size(), &signal));
  EXPECT_FALSE(signal);
}

TEST_F(RingInterop, HostWritesGuestReadsAcrossManyWrapsAndFullRing) {
  unixhv::vmbus::Ring guest;
  guest.Init(memory_.base(), kRingPages);
  auto pages = vmbus::RingPages::FromPfns(memory_, pfns_);
  auto host = vmbus::RingWriter::Create(*std::move(pages));
  ASSERT_TRUE(host.ok()) << host.status();

  std::vector<uint8_t> buffer(16384);
  uint32_t sent = 0, received = 0, guest_signals = 0;
  // Fill until the host finds the ring full, then drain, many times over.
  for (int round = 0; round < 40; ++round) {
    for (;;) {
      const std::vector<uint8_t> payload =
          Pattern(8 + (sent * 53) % 2500, sent);
      auto w = host->Write(vmbus::kPacketDataInband, 0, sent, payload);
      ASSERT_TRUE(w.ok()) << w.status();
      if (!w->written) break;  // full: the host posted pending_send_sz
      ++sent;
    }
    EXPECT_NE(guest.header()->pending_send_sz, 0u);
    for (;;) {
      unixhv::vmbus::PacketDescriptor desc;
      uint32_t len = 0;
      bool signal = false;
      const int r =
          guest.Read(&desc, buffer.data(), buffer.size(), &len, &signal);
      ASSERT_GE(r, 0) << "packet " << received;
      if (r == 0) break;
      guest_signals += signal;
      const std::vector<uint8_t> expected =
          Pattern(8 + (received * 53) % 2500, received);
      EXPECT_EQ(desc.trans_id, received);
      EXPECT_EQ(desc.type, unixhv::vmbus::kPacketDataInband);
      ASSERT_GE(len, expected.size());
      EXPECT_TRUE(std::equal(expected.begin(), expected.end(), buffer.begin()))
          << "packet " << received;
      ++received;
    }
    EXPECT_EQ(received, sent);
  }
  // The host waited on pending_send_sz each round: the guest must have told
  // it once per round that room was made.
  EXPECT_EQ(guest_signals, 40u);
}

TEST_F(RingInterop, GuestReaderRejectsMalformedHostPackets) {
  unixhv::vmbus::Ring guest;
  guest.Init(memory_.base(), kRingPages);
  std::vector<uint8_t> buffer(4096);
  unixhv::vmbus::PacketDescriptor desc;
  uint32_t len = 0;
  bool signal = false;
  struct Case {
    const char* what;
    uint16_t offset8, len8;
    uint32_t write_index;
  } cases[] = {
      {"len8 past what was written", 2, 100, 24},
      {"offset8 inside the descriptor", 1, 2, 24},
      {"offset8 past len8", 5, 3, 48},
      {"zero length", 0, 0, 24},
      {"payload larger than the caller's buffer", 2, 1000, 8200},
      {"write index outside the ring", 2, 2, 0xFFFFFF00},
      {"write index not a multiple of 8", 2, 2, 27},
  };
  for (const Case& c : cases) {
    guest.Init(memory_.base(), kRingPages);
    unixhv::vmbus::PacketDescriptor d{6, c.offset8, c.len8, 0, 7};
    std::memcpy(guest.data(), &d, sizeof(d));
    guest.header()->write_index = c.write_index;
    EXPECT_EQ(guest.Read(&desc, buffer.data(), 4096, &len, &signal), -1)
        << c.what;
    EXPECT_EQ(guest.header()->read_index, 0u) << c.what;
  }
}

// ------------------------------------------------------------- IC services

class IcInterop : public ::testing::Test {
 protected:
  IcInterop() {
    console.clear();
    services_.set_reference_time([]() -> uint64_t { return 1234567; });
  }
  static constexpr unixhv::ic::KvpItem kIntrinsic[] = {
      {"FullyQualifiedDomainName", "vm1.example"},
      {"OSName", "UnixHv"},
  };
  // The guest answers in place, as hv_utils.
  std::vector<uint8_t> Answer(unixhv::ic::Services::Kind kind,
                              std::vector<uint8_t> request) {
    // As the ring delivers it: padded to 8.
    request.resize((request.size() + 7) & ~size_t{7});
    services_.HandlePacket(kind, request.data(), request.size());
    return request;
  }
  vsp::ic::IcVersions Negotiate(unixhv::ic::Services::Kind kind,
                                std::span<const vsp::ic::IcVersion> host) {
    auto answer = Answer(
        kind, vsp::ic::BuildNegotiate(vsp::ic::kFrameworkVersions, host));
    auto v = vsp::ic::ParseNegotiateResponse(answer,
                                             vsp::ic::kFrameworkVersions, host);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : vsp::ic::IcVersions{};
  }

  unixhv::Serial serial_ = unixhv::Serial::ToCallback(Capture);
  unixhv::ic::Services services_{serial_, "guest: "};
};

TEST_F(IcInterop, NegotiatesTheNewestCommonVersions) {
  using K = unixhv::ic::Services;
  auto hb = Negotiate(K::kHeartbeat, vsp::ic::kHeartbeatVersions);
  EXPECT_EQ(vsp::ic::VersionString(hb.framework), "3.0");
  EXPECT_EQ(vsp::ic::VersionString(hb.message), "3.0");
  EXPECT_EQ(vsp::ic::VersionString(
                Negotiate(K::kShutdown, vsp::ic::kShutdownVersions).message),
            "3.2");
  EXPECT_EQ(vsp::ic::VersionString(
                Negotiate(K::kTimeSync, vsp::ic::kTimeSyncVersions).message),
            "4.0");
  // The guest knows KVP 5.0, the host stops at 4.0.
  EXPECT_EQ(
      vsp::ic::VersionString(Negotiate(K::kKvp, vsp::ic::kKvpVersions).message),
      "4.0");
  EXPECT_THAT(console, HasSubstr("guest: kvp negotiated: framework 3.0, "
                                 "service 4.0"));
}

TEST_F(IcInterop, NoCommonVersionAnswersZeroCounts) {
  const vsp::ic::IcVersion only_future[] = {{9, 9}};
  auto answer =
      Answer(unixhv::ic::Services::kHeartbeat,
             vsp::ic::BuildNegotiate(vsp::ic::kFrameworkVersions, only_future));
  auto v = vsp::ic::ParseNegotiateResponse(answer, vsp::ic::kFrameworkVersions,
                                           only_future);
  EXPECT_EQ(v.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(IcInterop, NegotiateClaimingMoreVersionsThanItCarriesIsLeftAlone) {
  std::vector<uint8_t> request = vsp::ic::BuildNegotiate(
      vsp::ic::kFrameworkVersions, vsp::ic::kHeartbeatVersions);
  request[28] = 200;  // icframe_vercnt far past the message
  const std::vector<uint8_t> before = request;
  services_.HandlePacket(unixhv::ic::Services::kHeartbeat, request.data(),
                         request.size());
  // Counts untouched (no versions read past the end); only the header says
  // "response".
  EXPECT_EQ(request[28], 200);
  EXPECT_TRUE(
      std::equal(before.begin() + 28, before.end(), request.begin() + 28));
}

TEST_F(IcInterop, HeartbeatAnswersSequencePlusOne) {
  vsp::ic::IcVersions v =
      Negotiate(unixhv::ic::Services::kHeartbeat, vsp::ic::kHeartbeatVersions);
  vsp::ic::HeartbeatMonitor monitor({});
  const absl::Time now = absl::Now();
  for (int i = 0; i < 3; ++i) {
    auto request = monitor.MaybeRequest(v, now + absl::Seconds(10 * i));
    ASSERT_TRUE(request.has_value());
    auto answer = Answer(unixhv::ic::Services::kHeartbeat, *request);
    EXPECT_TRUE(monitor.OnResponse(answer, now + absl::Seconds(10 * i)).ok());
  }
  EXPECT_EQ(services_.heartbeats(), 3u);
  EXPECT_EQ(monitor.Status(now + absl::Seconds(20)),
            vsp::ic::HeartbeatStatus::kOk);
}

TEST_F(IcInterop, ShutdownIsAcknowledgedAndHibernateRefused) {
  vsp::ic::IcVersions v =
      Negotiate(unixhv::ic::Services::kShutdown, vsp::ic::kShutdownVersions);
  vsp::ic::ShutdownRequest hibernate;
  hibernate.kind = vsp::ic::ShutdownKind::kHibernate;
  auto refused = Answer(unixhv::ic::Services::kShutdown,
                        vsp::ic::BuildShutdownRequest(hibernate, v));
  EXPECT_EQ(vsp::ic::ParseShutdownResponse(refused).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(services_.shutdown_requested());

  vsp::ic::ShutdownRequest request;
  request.reason_code = 0x80040001;
  request.message = "maintenance";
  auto answer = Answer(unixhv::ic::Services::kShutdown,
                       vsp::ic::BuildShutdownRequest(request, v));
  EXPECT_TRUE(vsp::ic::ParseShutdownResponse(answer).ok());
  EXPECT_TRUE(services_.shutdown_requested());
  EXPECT_EQ(services_.shutdown_flags(), 0u);
  EXPECT_THAT(console,
              HasSubstr("guest: shutdown requested: flags 0 reason 0x80040001 "
                        "message \"maintenance\""));
}

TEST_F(IcInterop, TimeSampleIsAnsweredAndPrinted) {
  vsp::ic::IcVersions v =
      Negotiate(unixhv::ic::Services::kTimeSync, vsp::ic::kTimeSyncVersions);
  const absl::Time host_time = absl::FromUnixSeconds(1700000000);
  auto answer = Answer(unixhv::ic::Services::kTimeSync,
                       vsp::ic::BuildTimeSample(host_time, 1000000,
                                                vsp::ic::kTimeSyncFlagSync, v));
  EXPECT_TRUE(vsp::ic::ParseTimeSyncResponse(answer).ok());
  EXPECT_TRUE(services_.time_sample_seen());
  EXPECT_THAT(console,
              HasSubstr("guest: time sample " +
                        std::to_string(vsp::ic::ToWindowsTime(host_time)) +
                        " flags 1 delay_100ns 234567"));
  EXPECT_THAT(console, HasSubstr("unix 1700000000"));
}

TEST_F(IcInterop, KvpRoundTripsThroughTheHostCodec) {
  services_.set_intrinsic(kIntrinsic, 2);
  vsp::ic::IcVersions v =
      Negotiate(unixhv::ic::Services::kKvp, vsp::ic::kKvpVersions);
  auto exchange = [&](const vsp::ic::KvpRequest& r) {
    auto request = vsp::ic::BuildKvpRequest(r, v);
    EXPECT_TRUE(request.ok()) << request.status();
    auto parsed =
        vsp::ic::ParseKvpResponse(Answer(unixhv::ic::Services::kKvp, *request));
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    return *parsed;
  };
  using Op = vsp::ic::KvpOperation;
  using Pool = vsp::ic::KvpPool;
  EXPECT_EQ(exchange({Op::kSet, Pool::kExternal, "color", "blue"}).status,
            vsp::ic::kHvSOk);
  EXPECT_EQ(exchange({Op::kSet, Pool::kExternal, "size", "x"}).status,
            vsp::ic::kHvSOk);
  EXPECT_EQ(exchange({Op::kSet, Pool::kExternal, "size", "large"}).status,
            vsp::ic::kHvSOk);  // overwrite, not a second entry
  auto got = exchange({Op::kGet, Pool::kExternal, "size"});
  EXPECT_EQ(got.status, vsp::ic::kHvSOk);
  EXPECT_EQ(got.value, "large");
  EXPECT_EQ(exchange({Op::kGet, Pool::kExternal, "missing"}).status,
            vsp::ic::kHvEFail);
  EXPECT_EQ(exchange({Op::kGet, Pool::kGuest, "color"}).status,
            vsp::ic::kHvEFail);  // pools are separate
  EXPECT_EQ(exchange({Op::kSet, Pool::kAuto, "OSName", "evil"}).status,
            vsp::ic::kHvEFail);  // the intrinsic pool is the guest's own
  EXPECT_THAT(console, HasSubstr("guest: kvp set pool 0: color = blue"));

  // The host's pool scan: ENUMERATE until S_CONT.
  vsp::ic::KvpExchange scan;
  scan.ScanPool(Pool::kAuto);
  for (int i = 0; i < 10; ++i) {
    auto next = scan.NextMessage(v);
    ASSERT_TRUE(next.ok());
    if (!next->has_value()) break;
    auto r = scan.OnResponse(Answer(unixhv::ic::Services::kKvp, **next));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  EXPECT_THAT(scan.pool(Pool::kAuto),
              ::testing::ElementsAre(
                  ::testing::Pair("FullyQualifiedDomainName", "vm1.example"),
                  ::testing::Pair("OSName", "UnixHv")));
  EXPECT_EQ(exchange({Op::kGet, Pool::kAuto, "OSName"}).value, "UnixHv");

  EXPECT_EQ(exchange({Op::kDelete, Pool::kExternal, "color"}).status,
            vsp::ic::kHvSOk);
  EXPECT_EQ(exchange({Op::kGet, Pool::kExternal, "color"}).status,
            vsp::ic::kHvEFail);
  EXPECT_EQ(exchange({Op::kDelete, Pool::kExternal, "color"}).status,
            vsp::ic::kHvEFail);
  // The remaining host pool enumerates to its one item, then S_CONT.
  auto first = exchange({Op::kEnumerate, Pool::kExternal, "", "", 0});
  EXPECT_EQ(first.key, "size");
  EXPECT_EQ(exchange({Op::kEnumerate, Pool::kExternal, "", "", 1}).status,
            vsp::ic::kHvSCont);
}

TEST_F(IcInterop, TruncatedKvpMessageIsRefused) {
  vsp::ic::IcVersions v =
      Negotiate(unixhv::ic::Services::kKvp, vsp::ic::kKvpVersions);
  auto request = vsp::ic::BuildKvpRequest(
      {vsp::ic::KvpOperation::kSet, vsp::ic::KvpPool::kExternal, "k", "v"}, v);
  ASSERT_TRUE(request.ok());
  request->resize(200);  // the host's 7.4 KiB message cut short
  auto parsed =
      vsp::ic::ParseKvpResponse(Answer(unixhv::ic::Services::kKvp, *request));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->status, vsp::ic::kHvEFail);
}

}  // namespace
