// The RNDIS miniport against the requests Linux's rndis_filter.c sends, in
// the order rndis_filter_device_add sends them, and checked the way it
// checks the answers.
#include "vmwp/vsp/net/rndis_device.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "vmwp/vsp/net/nvsp_protocol.h"

namespace vsp::net {
namespace {

constexpr MacAddress kMac = {0x00, 0x15, 0x5d, 0x01, 0x02, 0x03};

template <typename T>
void Put(std::vector<uint8_t>& v, size_t at, const T& value) {
  std::memcpy(v.data() + at, &value, sizeof(T));
}

// get_rndis_request + the OID-specific parts of rndis_filter_query_device
// and the set helpers.
std::vector<uint8_t> OidRequest(uint32_t type, uint32_t id, uint32_t oid,
                                const std::vector<uint8_t>& info) {
  std::vector<uint8_t> m(8 + sizeof(RndisOidRequest) + info.size());
  Put(m, 0, RndisHeader{type, static_cast<uint32_t>(m.size())});
  Put(m, 8,
      RndisOidRequest{id, oid, static_cast<uint32_t>(info.size()),
                      sizeof(RndisOidRequest), 0});
  if (!info.empty())
    std::memcpy(m.data() + 8 + sizeof(RndisOidRequest), info.data(),
                info.size());
  return m;
}

struct Answer {
  uint32_t status = 0;
  std::vector<uint8_t> info;
};

class RndisDeviceTest : public ::testing::Test {
 protected:
  RndisDeviceTest() : device_({.mac = kMac, .mtu = 1500}) {}

  RndisDevice::Result Send(const std::vector<uint8_t>& m,
                           uint32_t nvsp = kNvspVersion61) {
    auto view = ParseRndisMessage(m);
    EXPECT_TRUE(view.ok()) << view.status();
    return device_.HandleControl(*view, nvsp);
  }

  // rndis_filter_query_device's checks, then the information buffer.
  Answer Query(uint32_t oid, const std::vector<uint8_t>& info = {},
               uint32_t nvsp = kNvspVersion61) {
    RndisDevice::Result r =
        Send(OidRequest(kRndisMsgQuery, ++id_, oid, info), nvsp);
    EXPECT_TRUE(r.error.ok()) << r.error;
    Answer a;
    if (!r.response.has_value()) {
      ADD_FAILURE() << "no answer";
      return a;
    }
    const std::vector<uint8_t>& m = *r.response;
    RndisHeader h;
    std::memcpy(&h, m.data(), 8);
    EXPECT_EQ(h.type, kRndisMsgQueryComplete);
    EXPECT_EQ(h.length, m.size());
    RndisQueryComplete c;
    std::memcpy(&c, m.data() + 8, sizeof(c));
    EXPECT_EQ(c.request_id, id_);
    EXPECT_GE(c.info_buffer_offset, sizeof(c));
    EXPECT_LE(uint64_t{c.info_buffer_offset} + c.info_buffer_length,
              h.length - 8u);
    a.status = c.status;
    a.info.assign(m.begin() + 8 + c.info_buffer_offset,
                  m.begin() + 8 + c.info_buffer_offset + c.info_buffer_length);
    return a;
  }
  uint32_t QueryU32(uint32_t oid) {
    Answer a = Query(oid);
    EXPECT_EQ(a.status, kRndisStatusSuccess);
    EXPECT_EQ(a.info.size(), 4u);
    uint32_t v = 0;
    if (a.info.size() == 4) std::memcpy(&v, a.info.data(), 4);
    return v;
  }
  uint32_t Set(uint32_t oid, const std::vector<uint8_t>& info) {
    RndisDevice::Result r = Send(OidRequest(kRndisMsgSet, ++id_, oid, info));
    EXPECT_TRUE(r.error.ok()) << r.error;
    if (!r.response.has_value()) return ~0u;
    RndisSetComplete c;
    std::memcpy(&c, r.response->data() + 8, sizeof(c));
    EXPECT_EQ(c.request_id, id_);
    return c.status;
  }
  void Init() {
    std::vector<uint8_t> m(8 + sizeof(RndisInitializeRequest));
    Put(m, 0, RndisHeader{kRndisMsgInit, static_cast<uint32_t>(m.size())});
    // rndis_filter_init_device: version 1.0, max_xfer_size 0x4000.
    Put(m, 8, RndisInitializeRequest{++id_, 1, 0, 0x4000});
    RndisDevice::Result r = Send(m);
    ASSERT_TRUE(r.error.ok());
    ASSERT_TRUE(r.response.has_value());
    RndisInitializeComplete c;
    std::memcpy(&c, r.response->data() + 8, sizeof(c));
    EXPECT_EQ(c.request_id, id_);
    EXPECT_EQ(c.status, kRndisStatusSuccess);
    // nvdev->max_pkt / pkt_align = 1 << factor.
    EXPECT_EQ(c.max_packets_per_message, 8u);
    EXPECT_EQ(1u << c.packet_alignment_factor, 8u);
    EXPECT_TRUE(device_.initialized());
  }

  RndisDevice device_;
  uint32_t id_ = 0;
};

TEST_F(RndisDeviceTest, LinuxDeviceAddSequence) {
  Init();
  // Get the MTU from the host: used if smaller than the netdev's.
  EXPECT_EQ(QueryU32(kOidGenMaximumFrameSize), 1500u);
  // The MAC (size ETH_ALEN expected, larger answers fail).
  Answer mac = Query(kOid8023PermanentAddress);
  EXPECT_EQ(mac.status, kRndisStatusSuccess);
  EXPECT_EQ(mac.info, std::vector<uint8_t>(kMac.begin(), kMac.end()));
  // Friendly name: "ignore if host does not support".
  EXPECT_EQ(Query(kOidGenFriendlyName).status, kRndisStatusNotSupported);
  // Hardware offload capabilities, the way each NVSP version asks.
  struct Ask {
    uint32_t nvsp;
    uint8_t revision;
    uint16_t size;
  } asks[] = {{kNvspVersion61, 3, kNdisOffloadSize},
              {kNvspVersion5, 3, kNdisOffloadSize},
              {kNvspVersion4, 2, kNdisOffloadSize61},
              {kNvspVersion2, 1, kNdisOffloadSize60},
              {kNvspVersion1, 1, kNdisOffloadSize60}};
  for (const Ask& ask : asks) {
    std::vector<uint8_t> req(ask.size, 0);
    Put(req, 0,
        NdisObjectHeader{kNdisObjectTypeOffload, ask.revision, ask.size});
    Answer a = Query(kOidTcpOffloadHardwareCapabilities, req, ask.nvsp);
    ASSERT_EQ(a.status, kRndisStatusSuccess);
    // info_buflen <= sizeof(struct ndis_offload); rndis_query_hwcaps.
    ASSERT_LE(a.info.size(), sizeof(NdisOffload));
    NdisOffload caps{};
    std::memcpy(&caps, a.info.data(), a.info.size());
    EXPECT_EQ(caps.header.type, kNdisObjectTypeOffload);
    EXPECT_GE(caps.header.revision, 1);
    EXPECT_LE(caps.header.size, a.info.size());
    EXPECT_GE(caps.header.size, kNdisOffloadSize60);
    EXPECT_EQ(caps.header.size, ask.size);
    // No offload: Linux enables no TX checksum, no TSO, no LRO.
    EXPECT_EQ(caps.checksum.ip4_tx_checksum, 0u);
    EXPECT_EQ(caps.checksum.ip6_tx_checksum, 0u);
    EXPECT_EQ(caps.lso_v2.ip4_encapsulation, 0u);
    EXPECT_EQ(caps.rsc.ip4, 0);
  }
  // rndis_netdev_set_hwcaps then sets: ip_v4_csum TX_RX_DISABLED, the rest
  // "no change" (nothing offered).
  NdisOffloadParameters params{};
  params.header = {kNdisObjectTypeDefault, 3, sizeof(params)};
  params.ip4_checksum = kOffloadParameterDisabled;
  std::vector<uint8_t> p(sizeof(params));
  Put(p, 0, params);
  EXPECT_EQ(Set(kOidTcpOffloadParameters, p), kRndisStatusSuccess);
  // NVSP <= 4 sends VERSION_4_OFFLOAD_SIZE bytes.
  p.resize(kNdisOffloadParametersSizeV4);
  EXPECT_EQ(Set(kOidTcpOffloadParameters, p), kRndisStatusSuccess);
  // Link state: 0 = connected.
  EXPECT_EQ(QueryU32(kOidGenMediaConnectStatus), kMediaStateConnected);
  // NVSP >= 5: link speed in 100 b/s units (Linux divides by 10000 for Mb/s).
  EXPECT_EQ(QueryU32(kOidGenLinkSpeed) / 10000, 10000u);
  // vRSS: not offered, Linux stays on one channel.
  std::vector<uint8_t> rss(sizeof(NdisReceiveScaleCapabilities), 0);
  Put(rss, 0, NdisObjectHeader{kNdisObjectTypeRssCapabilities, 2, 18});
  EXPECT_NE(Query(kOidGenReceiveScaleCapabilities, rss).status,
            kRndisStatusSuccess);
  // rndis_filter_open_device: BROADCAST | ALL_MULTICAST | DIRECTED.
  const uint32_t filter =
      kPacketTypeBroadcast | kPacketTypeAllMulticast | kPacketTypeDirected;
  std::vector<uint8_t> f(4);
  Put(f, 0, filter);
  EXPECT_EQ(Set(kOidGenCurrentPacketFilter, f), kRndisStatusSuccess);
  EXPECT_EQ(device_.packet_filter(), filter);
  EXPECT_EQ(QueryU32(kOidGenCurrentPacketFilter), filter);
}

TEST_F(RndisDeviceTest, OffloadsThatWereNotOfferedAreRefused) {
  Init();
  NdisOffloadParameters params{};
  params.header = {kNdisObjectTypeDefault, 3, sizeof(params)};
  params.tcp4_checksum = 4;  // TX_RX_ENABLED
  std::vector<uint8_t> p(sizeof(params));
  Put(p, 0, params);
  EXPECT_EQ(Set(kOidTcpOffloadParameters, p), kRndisStatusNotSupported);
  params.tcp4_checksum = 0;
  params.lso_v2_ip4 = 2;  // LSOV2_ENABLED
  Put(p, 0, params);
  EXPECT_EQ(Set(kOidTcpOffloadParameters, p), kRndisStatusNotSupported);
  EXPECT_EQ(Set(kOidTcpOffloadParameters, {1, 2, 3}), kRndisStatusNotSupported);
}

TEST_F(RndisDeviceTest, MacChangeThroughConfigParameterIsRefused) {
  Init();
  // rndis_filter_set_device_mac: "NetworkAddress" = UTF-16 hex string.
  std::vector<uint8_t> info(sizeof(RndisConfigParameterInfo) + 28 + 24);
  Put(info, 0, RndisConfigParameterInfo{20, 28, 2, 48, 24});
  EXPECT_EQ(Set(kOidGenRndisConfigParameter, info), kRndisStatusNotSupported);
}

TEST_F(RndisDeviceTest, PacketFilterDecidesWhatReachesTheGuest) {
  Init();
  auto frame = [](std::vector<uint8_t> dst) {
    dst.resize(60, 0);
    return dst;
  };
  const auto to_us = frame({0x00, 0x15, 0x5d, 0x01, 0x02, 0x03});
  const auto to_other = frame({0x00, 0x15, 0x5d, 0x01, 0x02, 0x04});
  const auto bcast = frame({0xff, 0xff, 0xff, 0xff, 0xff, 0xff});
  const auto mcast = frame({0x01, 0x00, 0x5e, 0x00, 0x00, 0x01});
  EXPECT_FALSE(device_.Accepts(to_us)) << "filter 0 after INIT";
  auto set = [&](uint32_t filter) {
    std::vector<uint8_t> f(4);
    Put(f, 0, filter);
    ASSERT_EQ(Set(kOidGenCurrentPacketFilter, f), kRndisStatusSuccess);
  };
  set(kPacketTypeDirected);
  EXPECT_TRUE(device_.Accepts(to_us));
  EXPECT_FALSE(device_.Accepts(to_other));
  EXPECT_FALSE(device_.Accepts(bcast));
  EXPECT_FALSE(device_.Accepts(mcast));
  set(kPacketTypeDirected | kPacketTypeBroadcast | kPacketTypeAllMulticast);
  EXPECT_TRUE(device_.Accepts(bcast));
  EXPECT_TRUE(device_.Accepts(mcast));
  EXPECT_FALSE(device_.Accepts(to_other));
  set(kPacketTypePromiscuous);
  EXPECT_TRUE(device_.Accepts(to_other));
  EXPECT_FALSE(device_.Accepts(std::vector<uint8_t>(5)));
  std::vector<uint8_t> short_set = {1, 0};
  EXPECT_EQ(Set(kOidGenCurrentPacketFilter, short_set),
            kRndisStatusInvalidLength);
}

TEST_F(RndisDeviceTest, HaltKeepaliveResetAndLink) {
  Init();
  std::vector<uint8_t> keep(12);
  Put(keep, 0, RndisHeader{kRndisMsgKeepalive, 12});
  Put(keep, 8, uint32_t{0x55});
  RndisDevice::Result r = Send(keep);
  ASSERT_TRUE(r.response.has_value());
  RndisKeepaliveComplete kc;
  std::memcpy(&kc, r.response->data() + 8, sizeof(kc));
  EXPECT_EQ(kc.request_id, 0x55u);
  EXPECT_EQ(kc.status, kRndisStatusSuccess);

  std::vector<uint8_t> reset(12);
  Put(reset, 0, RndisHeader{kRndisMsgReset, 12});
  r = Send(reset);
  ASSERT_TRUE(r.response.has_value());
  RndisHeader h;
  std::memcpy(&h, r.response->data(), 8);
  EXPECT_EQ(h.type, kRndisMsgResetComplete);

  device_.set_link_up(false);
  EXPECT_EQ(QueryU32(kOidGenMediaConnectStatus), kMediaStateDisconnected);
  auto ind = RndisDevice::BuildLinkIndication(false);
  RndisIndicateStatus s;
  std::memcpy(&s, ind.data() + 8, sizeof(s));
  EXPECT_EQ(s.status, kRndisStatusMediaDisconnect);

  std::vector<uint8_t> halt(12);
  Put(halt, 0, RndisHeader{kRndisMsgHalt, 12});
  r = Send(halt);
  EXPECT_FALSE(r.response.has_value());
  EXPECT_TRUE(r.error.ok());
  EXPECT_FALSE(device_.initialized());
  EXPECT_EQ(device_.packet_filter(), 0u);
}

TEST_F(RndisDeviceTest, MalformedControlMessages) {
  // INIT too short: answered with an error status (the id is there).
  std::vector<uint8_t> init(12);
  Put(init, 0, RndisHeader{kRndisMsgInit, 12});
  Put(init, 8, uint32_t{1});
  RndisDevice::Result r = Send(init);
  EXPECT_FALSE(r.error.ok());
  ASSERT_TRUE(r.response.has_value());
  RndisInitializeComplete ic;
  std::memcpy(&ic, r.response->data() + 8, sizeof(ic));
  EXPECT_NE(ic.status, kRndisStatusSuccess);
  EXPECT_FALSE(device_.initialized());
  // QUERY with an information buffer outside the message: answered
  // INVALID_DATA so a waiting guest is released.
  std::vector<uint8_t> q = OidRequest(kRndisMsgQuery, 3, kOidGenLinkSpeed, {});
  Put(q, 8 + 8, uint32_t{100});  // info_buffer_length
  r = Send(q);
  EXPECT_FALSE(r.error.ok());
  ASSERT_TRUE(r.response.has_value());
  RndisQueryComplete qc;
  std::memcpy(&qc, r.response->data() + 8, sizeof(qc));
  EXPECT_EQ(qc.request_id, 3u);
  EXPECT_EQ(qc.status, kRndisStatusInvalidData);
  // Host-to-guest types and unknown types: errors, no answer.
  for (uint32_t type :
       {uint32_t{kRndisMsgInitComplete}, uint32_t{kRndisMsgIndicate},
        uint32_t{kRndisMsgPacket}, 0x1234u}) {
    std::vector<uint8_t> m(12);
    Put(m, 0, RndisHeader{type, 12});
    r = Send(m);
    EXPECT_FALSE(r.error.ok()) << RndisTypeName(type);
    EXPECT_FALSE(r.response.has_value());
  }
  // KEEPALIVE without an id.
  std::vector<uint8_t> k(8);
  Put(k, 0, RndisHeader{kRndisMsgKeepalive, 8});
  r = Send(k);
  EXPECT_FALSE(r.error.ok());
}

TEST_F(RndisDeviceTest, SupportedListAndFixedAnswers) {
  Init();
  Answer list = Query(kOidGenSupportedList);
  ASSERT_EQ(list.status, kRndisStatusSuccess);
  ASSERT_EQ(list.info.size() % 4, 0u);
  std::vector<uint32_t> oids(list.info.size() / 4);
  std::memcpy(oids.data(), list.info.data(), list.info.size());
  // Everything listed is answered.
  for (uint32_t oid : oids) {
    if (oid == kOidTcpOffloadParameters) continue;  // set only
    EXPECT_EQ(Query(oid).status, kRndisStatusSuccess) << std::hex << oid;
  }
  Answer desc = Query(kOidGenVendorDescription);
  EXPECT_EQ(desc.info.back(), 0);
  EXPECT_EQ(QueryU32(kOidGenMaximumTotalSize), 1514u);
  EXPECT_EQ(device_.max_frame_size(), 1518u);
}

}  // namespace
}  // namespace vsp::net
