#include "vmwp/vsp/net/rndis.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace vsp::net {
namespace {

// An RNDIS_MSG_PACKET as Linux's netvsc_xmit lays it out: header, rndis_packet
// with data_offset = sizeof(rndis_packet) + PPIs, per_pkt_info_offset =
// sizeof(rndis_packet), each PPI {size 12 + value, type, offset 12}
// (init_ppi_data), then the frame.
struct LinuxPpi {
  uint32_t type;
  uint32_t value;
};
std::vector<uint8_t> LinuxPacket(const std::vector<uint8_t>& frame,
                                 const std::vector<LinuxPpi>& ppis = {}) {
  RndisPacket p{};
  p.data_offset = sizeof(RndisPacket);
  p.data_length = static_cast<uint32_t>(frame.size());
  p.per_packet_info_offset = sizeof(RndisPacket);
  std::vector<uint8_t> ppi_bytes;
  for (const LinuxPpi& ppi : ppis) {
    RndisPerPacketInfo e{16, ppi.type, 12};
    size_t at = ppi_bytes.size();
    ppi_bytes.resize(at + 16);
    std::memcpy(ppi_bytes.data() + at, &e, 12);
    std::memcpy(ppi_bytes.data() + at + 12, &ppi.value, 4);
    p.data_offset += 16;
    p.per_packet_info_length += 16;
  }
  RndisHeader h{
      kRndisMsgPacket,
      static_cast<uint32_t>(8 + sizeof(p) + ppi_bytes.size() + frame.size())};
  std::vector<uint8_t> out(h.length);
  std::memcpy(out.data(), &h, 8);
  std::memcpy(out.data() + 8, &p, sizeof(p));
  std::memcpy(out.data() + 8 + sizeof(p), ppi_bytes.data(), ppi_bytes.size());
  std::memcpy(out.data() + 8 + sizeof(p) + ppi_bytes.size(), frame.data(),
              frame.size());
  return out;
}

std::vector<uint8_t> Frame(size_t n) {
  std::vector<uint8_t> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = static_cast<uint8_t>(i * 13 + 1);
  return f;
}

template <typename T>
void Put(std::vector<uint8_t>& v, size_t at, const T& value) {
  std::memcpy(v.data() + at, &value, sizeof(T));
}

TEST(RndisMessageTest, HeaderBounds) {
  EXPECT_FALSE(ParseRndisMessage(std::vector<uint8_t>(7)).ok());
  std::vector<uint8_t> m(16);
  Put(m, 0, RndisHeader{kRndisMsgKeepalive, 4});
  EXPECT_FALSE(ParseRndisMessage(m).ok()) << "length below the header";
  Put(m, 0, RndisHeader{kRndisMsgKeepalive, 17});
  EXPECT_FALSE(ParseRndisMessage(m).ok()) << "length past the bytes";
  Put(m, 0, RndisHeader{kRndisMsgKeepalive, 12});
  auto v = ParseRndisMessage(m);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->type, kRndisMsgKeepalive);
  EXPECT_EQ(v->body.size(), 4u);
}

TEST(RndisPacketTest, LinuxPacketWithEveryPpi) {
  const std::vector<uint8_t> frame = Frame(1514);
  const std::vector<uint8_t> m =
      LinuxPacket(frame, {{kPpiHashValue, 0x12345678},
                          {kPpiIeee8021q, (5u << 4) | 3},
                          {kPpiTcpIpChecksum, kCsumTxIpv4 | kCsumTxTcp}});
  auto msg = ParseRndisMessage(m);
  ASSERT_TRUE(msg.ok()) << msg.status();
  auto p = ParseRndisPacket(msg->body);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->ppi_count, 3u);
  ASSERT_EQ(p->frame.size(), frame.size());
  EXPECT_TRUE(std::equal(frame.begin(), frame.end(), p->frame.begin()));
  EXPECT_EQ(p->hash, 0x12345678u);
  EXPECT_EQ(p->vlan, (5u << 4) | 3);
  EXPECT_EQ(p->checksum_info, kCsumTxIpv4 | kCsumTxTcp);
  EXPECT_FALSE(p->lso_info.has_value());
}

TEST(RndisPacketTest, InternalAndUnknownPpisAreSkipped) {
  auto m = LinuxPacket(Frame(60),
                       {{kPpiInternalBit | kPpiInternalPacketId, 7}, {42, 1}});
  auto p = ParseRndisPacket(ParseRndisMessage(m)->body);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->ppi_count, 2u);
  EXPECT_FALSE(p->vlan || p->hash || p->checksum_info || p->lso_info);
}

TEST(RndisPacketTest, HostileOffsetsAndLengths) {
  const std::vector<uint8_t> good =
      LinuxPacket(Frame(100), {{kPpiIeee8021q, 1}});
  const size_t body = 8;  // where rndis_packet starts
  auto parse = [](std::vector<uint8_t> m) {
    return ParseRndisPacket(std::span<const uint8_t>(m).subspan(8));
  };
  ASSERT_TRUE(parse(good).ok());
  struct Field {
    const char* what;
    size_t offset;  // into rndis_packet
    uint32_t value;
  } cases[] = {
      {"data offset inside the header", 0, 8},
      {"data offset past the end", 0, 1000},
      {"data length past the end", 4, 101},
      {"data length wraps", 4, 0xFFFFFFF0},
      {"data offset wraps", 0, 0xFFFFFFF8},
      {"oob length past the end", 12, 5000},
      {"ppi offset inside the header", 20, 4},
      {"ppi length past the end", 24, 10000},
      {"ppi length wraps", 24, 0xFFFFFFFF},
  };
  for (const Field& c : cases) {
    std::vector<uint8_t> m = good;
    if (c.offset == 12) Put(m, body + 8, uint32_t{36});  // oob offset
    Put(m, body + c.offset, c.value);
    EXPECT_FALSE(parse(m).ok()) << c.what;
  }
  // PPI element problems.
  const size_t ppi = body + sizeof(RndisPacket);
  struct Element {
    const char* what;
    size_t offset;
    uint32_t value;
  } elements[] = {
      {"element size 0", 0, 0},
      {"element size below its header", 0, 11},
      {"element larger than the area", 0, 17},
      {"value offset inside the header", 8, 4},
      {"value offset leaves no 4 bytes", 8, 13},
      {"value offset huge", 8, 0xFFFFFFFF},
  };
  for (const Element& e : elements) {
    std::vector<uint8_t> m = good;
    Put(m, ppi + e.offset, e.value);
    EXPECT_FALSE(parse(m).ok()) << e.what;
  }
  // A PPI area shorter than an element header.
  std::vector<uint8_t> m = good;
  Put(m, body + 24, uint32_t{8});
  EXPECT_FALSE(parse(m).ok());
  EXPECT_FALSE(ParseRndisPacket(std::vector<uint8_t>(35)).ok());
}

TEST(RndisOidTest, QueryAsLinuxSendsIt) {
  // rndis_filter_query_device: msg_len = RNDIS_MESSAGE_SIZE(query_request)
  // + extra, info_buf_offset = sizeof(rndis_query_request).
  std::vector<uint8_t> m(8 + 20 + 4);
  Put(m, 0, RndisHeader{kRndisMsgQuery, 32});
  Put(m, 8, RndisOidRequest{77, kOidGenLinkSpeed, 4, 20, 0});
  Put(m, 28, uint32_t{0xCAFE});
  auto r = ParseOidRequest(ParseRndisMessage(m)->body);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request_id, 77u);
  EXPECT_EQ(r->oid, kOidGenLinkSpeed);
  ASSERT_EQ(r->info.size(), 4u);
  uint32_t v;
  std::memcpy(&v, r->info.data(), 4);
  EXPECT_EQ(v, 0xCAFEu);
  // The information buffer must be inside the message.
  Put(m, 8, RndisOidRequest{77, kOidGenLinkSpeed, 5, 20, 0});
  EXPECT_FALSE(ParseOidRequest(ParseRndisMessage(m)->body).ok());
  Put(m, 8, RndisOidRequest{77, kOidGenLinkSpeed, 4, 8, 0});
  EXPECT_FALSE(ParseOidRequest(ParseRndisMessage(m)->body).ok());
  Put(m, 8, RndisOidRequest{77, kOidGenLinkSpeed, 4, 0xFFFFFFFE, 0});
  EXPECT_FALSE(ParseOidRequest(ParseRndisMessage(m)->body).ok());
  EXPECT_FALSE(ParseOidRequest(std::vector<uint8_t>(19)).ok());
}

// The checks rndis_filter_query_device applies to a QUERY_C.
void ExpectLinuxAcceptsQueryComplete(const std::vector<uint8_t>& m,
                                     uint32_t want_len) {
  ASSERT_GE(m.size(), 8u + sizeof(RndisQueryComplete));
  RndisHeader h;
  std::memcpy(&h, m.data(), 8);
  EXPECT_EQ(h.type, kRndisMsgQueryComplete);
  EXPECT_EQ(h.length, m.size());
  RndisQueryComplete c;
  std::memcpy(&c, m.data() + 8, sizeof(c));
  EXPECT_EQ(c.info_buffer_length, want_len);
  EXPECT_GE(c.info_buffer_offset, sizeof(RndisQueryComplete));
  EXPECT_GE(h.length - 8, c.info_buffer_offset);
  EXPECT_GE(h.length - 8 - c.info_buffer_offset, c.info_buffer_length);
}

TEST(RndisBuildTest, CompletionsAsLinuxReadsThem) {
  std::vector<uint8_t> info = {1, 2, 3, 4, 5, 6};
  ExpectLinuxAcceptsQueryComplete(
      BuildQueryComplete(9, kRndisStatusSuccess, info), 6);
  ExpectLinuxAcceptsQueryComplete(
      BuildQueryComplete(9, kRndisStatusNotSupported, {}), 0);

  auto init = BuildInitComplete(3, kRndisStatusSuccess, 8, 65536, 3);
  ASSERT_EQ(init.size(), 8u + sizeof(RndisInitializeComplete));
  RndisInitializeComplete ic;
  std::memcpy(&ic, init.data() + 8, sizeof(ic));
  EXPECT_EQ(ic.request_id, 3u);
  EXPECT_EQ(ic.max_packets_per_message, 8u);
  EXPECT_EQ(ic.packet_alignment_factor, 3u);
  EXPECT_EQ(ic.medium, kRndisMedium8023);

  auto set = BuildSetComplete(4, kRndisStatusNotSupported);
  EXPECT_EQ(set.size(), 16u);
  auto keep = BuildKeepaliveComplete(5, 0);
  EXPECT_EQ(keep.size(), 16u);
  auto reset = BuildResetComplete(0);
  EXPECT_EQ(reset.size(), 16u);

  // netvsc_linkstatus_callback: msg_len - 8 >= sizeof(rndis_indicate_status).
  auto ind = BuildIndicateStatus(kRndisStatusMediaDisconnect);
  EXPECT_EQ(ind.size(), 20u);
  RndisIndicateStatus s;
  std::memcpy(&s, ind.data() + 8, sizeof(s));
  EXPECT_EQ(s.status, kRndisStatusMediaDisconnect);
  // LINK_SPEED_CHANGE carries a u32 Linux finds at status_buf_offset.
  uint32_t speed = 100000000;
  auto sp = BuildIndicateStatus(kRndisStatusLinkSpeedChange,
                                {reinterpret_cast<uint8_t*>(&speed), 4});
  std::memcpy(&s, sp.data() + 8, sizeof(s));
  ASSERT_EQ(s.status_buffer_length, 4u);
  uint32_t back;
  std::memcpy(&back, sp.data() + 8 + s.status_buffer_offset, 4);
  EXPECT_EQ(back, speed);
}

TEST(RndisBuildTest, ReceiveHeaderAsRndisFilterReceiveDataChecksIt) {
  std::vector<uint8_t> buf(kRndisPacketHeaderSize + 60);
  WriteRndisPacketHeader(60, buf.data());
  auto m = ParseRndisMessage(buf);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->length, buf.size());
  RndisPacket p;
  std::memcpy(&p, buf.data() + 8, sizeof(p));
  // data_offset < data_buflen - RNDIS_HEADER_SIZE; data_len fits after it.
  EXPECT_LT(p.data_offset, buf.size() - 8);
  EXPECT_GE(buf.size() - 8 - p.data_offset, p.data_length);
  EXPECT_EQ(p.per_packet_info_offset, 0u);
  auto parsed = ParseRndisPacket(m->body);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->frame.size(), 60u);
  EXPECT_EQ(parsed->frame.data(), buf.data() + kRndisPacketHeaderSize);
}

}  // namespace
}  // namespace vsp::net
