#include "vmwp/vmbus/hvcore_bridge.h"

#include "gtest/gtest.h"
#include "vmwp/vmbus/test_fake_guest.h"

namespace vmbus {
namespace {

using testing::FakeGuest;

class NullVsp : public Vsp {
 public:
  const VspOffer& offer() const override { return offer_; }
  absl::Status OnOpen(std::shared_ptr<ChannelEndpoint>,
                      std::span<const uint8_t>) override {
    return absl::OkStatus();
  }
  void OnPacket(ChannelEndpoint&, const Packet&) override { ++packets; }
  void OnClose(uint32_t) override {}
  VspOffer offer_;
  int packets = 0;
};

// The guest -> host direction through hvcore's ConnectionTable, as the
// hypercall dispatcher reaches it.
TEST(HvcoreBridgeTest, RoutesHypercallsToTheServer) {
  FakeGuest guest;
  NullVsp vsp;
  VmbusServer server(guest.memory, guest, {.vp_count = 1});
  guest.server = &server;
  hvcore::hyperv::ConnectionTable table;
  ASSERT_TRUE(RegisterVmbusMessagePorts(table, server).ok());
  auto relid = server.AddVsp(&vsp);
  ASSERT_TRUE(relid.ok());
  ASSERT_TRUE(RegisterChannelEventPort(table, server, *relid).ok());
  EXPECT_FALSE(RegisterChannelEventPort(table, server, *relid).ok());

  auto contact = MakeMessage<InitiateContact>(kMsgInitiateContact);
  contact.vmbus_version_requested = kVersionWin10V5_3;
  contact.interrupt_page_or_sint = kVmbusMessageSint;
  auto port = table.FindMessagePort(kMessageConnectionId4);
  ASSERT_NE(port, nullptr);
  EXPECT_EQ(port->OnMessage(0, kVmbusMessageType, MessageBytes(contact)),
            hvcore::hyperv::kHvStatusSuccess);
  EXPECT_EQ(
      guest.Expect<VersionResponse>(kMsgVersionResponse).version_supported, 1);
  EXPECT_EQ(port->OnMessage(0, 9, MessageBytes(contact)),
            hvcore::hyperv::kHvStatusInvalidParameter);
  auto event = table.FindEventPort(VmbusServer::ConnectionIdForRelid(*relid));
  ASSERT_NE(event, nullptr);
  EXPECT_EQ(event->OnEvent(0, 0), hvcore::hyperv::kHvStatusSuccess);
}

}  // namespace
}  // namespace vmbus
