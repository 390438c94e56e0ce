#include "vmwp/vsp/net/nvsp.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace vsp::net {
namespace {

std::vector<uint8_t> Raw(uint32_t type, size_t body_bytes) {
  std::vector<uint8_t> v(4 + body_bytes, 0xAB);
  std::memcpy(v.data(), &type, 4);
  return v;
}

TEST(NvspTest, MessageIsFortyBytesAsLinuxSendsIt) {
  // Linux: vmbus_sendpacket(..., sizeof(struct nvsp_message), ...).
  NvspMessage m =
      MakeNvsp(kNvspMsgInit, NvspInit{kNvspVersion61, kNvspVersion61});
  EXPECT_EQ(Bytes(m).size(), 40u);
  auto view = ParseNvsp(Bytes(m));
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->type, kNvspMsgInit);
  EXPECT_EQ(view->body.size(), 36u);
  auto init = NvspBody<NvspInit>(*view);
  ASSERT_TRUE(init.ok());
  EXPECT_EQ(init->min_protocol_version, kNvspVersion61);
  EXPECT_EQ(init->max_protocol_version, kNvspVersion61);
}

TEST(NvspTest, ShortMessagesAreRefusedPerType) {
  EXPECT_FALSE(ParseNvsp({}).ok());
  EXPECT_FALSE(ParseNvsp(std::vector<uint8_t>{1, 0, 0}).ok());
  struct Case {
    uint32_t type;
    size_t need;
  } cases[] = {
      {kNvspMsgInit, 8},
      {kNvspMsg1SendNdisVersion, 8},
      {kNvspMsg1SendReceiveBuffer, 6},
      {kNvspMsg1SendSendBuffer, 6},
      {kNvspMsg1RevokeReceiveBuffer, 2},
      {kNvspMsg1RevokeSendBuffer, 2},
      {kNvspMsg1SendRndisPacket, 12},
      {kNvspMsg1SendRndisPacketComplete, 4},
      {kNvspMsg2SendNdisConfig, 16},
      {kNvspMsg4SwitchDataPath, 4},
      {kNvspMsg5Subchannel, 8},
  };
  for (const Case& c : cases) {
    EXPECT_FALSE(ParseNvsp(Raw(c.type, c.need - 1)).ok())
        << NvspTypeName(c.type);
    auto ok = ParseNvsp(Raw(c.type, c.need));
    EXPECT_TRUE(ok.ok()) << NvspTypeName(c.type) << ": " << ok.status();
  }
  // A type the host does not read needs no body; the session refuses it.
  EXPECT_TRUE(ParseNvsp(Raw(kNvspMsg6PdApi, 0)).ok());
  auto body = NvspBody<NvspInit>(NvspView{kNvspMsgInit, {}});
  EXPECT_FALSE(body.ok());
}

TEST(NvspTest, ReceiveBufferCompleteFitsTheBodyAsLinuxChecksIt) {
  // netvsc_send_completion's fall-through checks: every init-type completion
  // must be at least header + send_receive_buffer_complete (28 bytes).
  Nvsp1SendReceiveBufferComplete c{};
  c.status = kNvspStatusSuccess;
  c.section_count = 1;
  c.sections[0] = {0, 1728, 100, 172800};
  NvspMessage m = MakeNvsp(kNvspMsg1SendReceiveBufferComplete, c);
  EXPECT_GE(Bytes(m).size(), 4 + sizeof(Nvsp1SendReceiveBufferComplete));
  Nvsp1SendReceiveBufferComplete back;
  std::memcpy(&back, m.body, sizeof(back));
  EXPECT_EQ(back.sections[0].sub_allocation_size, 1728u);
  EXPECT_EQ(back.sections[0].sub_allocation_count, 100u);
}

TEST(NvspTest, VersionsAreLinuxs) {
  for (uint32_t v : {0x2u, 0x30002u, 0x40000u, 0x50000u, 0x60000u, 0x60001u}) {
    EXPECT_TRUE(IsKnownNvspVersion(v)) << std::hex << v;
  }
  EXPECT_FALSE(IsKnownNvspVersion(0x30000));
  EXPECT_FALSE(IsKnownNvspVersion(0x70000));
  EXPECT_EQ(NvspTypeName(kNvspMsg1SendRndisPacket), "SEND_RNDIS_PKT");
  EXPECT_EQ(NvspTypeName(999), "type 999");
}

}  // namespace
}  // namespace vsp::net
