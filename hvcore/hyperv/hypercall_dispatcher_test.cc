#include "hvcore/hyperv/hypercall_dispatcher.h"

#include <cstring>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "hvcore/hyperv/byte_array_guest_ram.h"

namespace hvcore::hyperv {
namespace {

constexpr uint64_t kRamSize = 0x40000;
constexpr uint64_t kInputPage = 0x10000;
constexpr uint32_t kVmbusConnection = 4;
constexpr uint32_t kEventConnection = 0x2001;

class RecordingPort final : public MessagePortHandler, public EventPortHandler {
 public:
  HvStatus OnMessage(uint32_t vp_index, uint32_t message_type,
                     std::span<const uint8_t> payload) override {
    last_vp = vp_index;
    last_type = message_type;
    last_payload.assign(payload.begin(), payload.end());
    ++messages;
    return status;
  }
  HvStatus OnEvent(uint32_t vp_index, uint16_t flag_number) override {
    last_vp = vp_index;
    last_flag = flag_number;
    ++events;
    return status;
  }

  HvStatus status = kHvStatusSuccess;
  int messages = 0, events = 0;
  uint32_t last_vp = 0, last_type = 0;
  uint16_t last_flag = 0;
  std::vector<uint8_t> last_payload;
};

class DispatcherTest : public testing::Test {
 protected:
  DispatcherTest() : ram_(kRamSize), dispatcher_(ram_, connections_) {
    port_ = std::make_shared<RecordingPort>();
    EXPECT_TRUE(connections_.RegisterMessagePort(kVmbusConnection, port_).ok());
    EXPECT_TRUE(connections_.RegisterEventPort(kEventConnection, port_).ok());
  }

  HvPostMessageInput Message(uint32_t connection, uint32_t type,
                             uint32_t size) {
    HvPostMessageInput in{};
    in.connection_id = connection;
    in.message_type = type;
    in.payload_size = size;
    for (uint32_t i = 0; i < kMessagePayloadSize; ++i) in.payload[i] = i;
    return in;
  }
  void Put(uint64_t gpa, const void* data, size_t size) {
    std::memcpy(ram_.data() + gpa, data, size);
  }
  uint16_t Call(uint64_t control, uint64_t input, uint64_t output = 0) {
    const uint64_t result =
        dispatcher_.Dispatch(1, HypercallArgs{control, input, output});
    EXPECT_EQ(result >> 16, 0u) << "no rep calls, nothing above the status";
    return static_cast<uint16_t>(result);
  }
  uint16_t PostAt(uint64_t gpa, const HvPostMessageInput& in) {
    Put(gpa, &in, sizeof(in));
    return Call(kHvCallPostMessage, gpa);
  }

  ByteArrayGuestRam ram_;
  ConnectionTable connections_;
  HypercallDispatcher dispatcher_;
  std::shared_ptr<RecordingPort> port_;
};

TEST_F(DispatcherTest, UnknownAndUnadvertisedCodes) {
  for (uint64_t code :
       {0x0000ull, 0x0001ull, 0x0002ull, 0x0003ull, 0x000Bull, 0x0013ull,
        0x0015ull, 0x0046ull, 0x0050ull, 0x8001ull, 0xFFFFull}) {
    EXPECT_EQ(Call(code, 0), kHvStatusInvalidHypercallCode) << code;
  }
}

TEST_F(DispatcherTest, ReservedControlBits) {
  EXPECT_EQ(Call(kHvCallPostMessage | (1ull << 31), kInputPage),
            kHvStatusInvalidHypercallInput);
  EXPECT_EQ(Call(0x1234 | (1ull << 63), 0), kHvStatusInvalidHypercallInput);
  EXPECT_EQ(port_->messages, 0);
}

TEST_F(DispatcherTest, PostMessageReachesThePort) {
  ASSERT_EQ(PostAt(kInputPage, Message(kVmbusConnection, 1, 0x30)),
            kHvStatusSuccess);
  EXPECT_EQ(port_->messages, 1);
  EXPECT_EQ(port_->last_vp, 1u);
  EXPECT_EQ(port_->last_type, 1u);
  ASSERT_EQ(port_->last_payload.size(), 0x30u);
  EXPECT_EQ(port_->last_payload[0x2F], 0x2F);
  // Full size, at the end of a page.
  EXPECT_EQ(
      PostAt(kInputPage + kPageSize - 256, Message(kVmbusConnection, 1, 240)),
      kHvStatusSuccess);
  EXPECT_EQ(port_->last_payload.size(), 240u);
}

TEST_F(DispatcherTest, PostMessageControlWordMustBeSimple) {
  const HvPostMessageInput in = Message(kVmbusConnection, 1, 8);
  Put(kInputPage, &in, sizeof(in));
  EXPECT_EQ(Call(kHvCallPostMessage | kHcFast, kInputPage),
            kHvStatusInvalidHypercallInput);
  EXPECT_EQ(Call(kHvCallPostMessage | (1ull << 32), kInputPage),
            kHvStatusInvalidHypercallInput);
  EXPECT_EQ(Call(kHvCallPostMessage | (1ull << 48), kInputPage),
            kHvStatusInvalidHypercallInput);
  EXPECT_EQ(Call(kHvCallPostMessage | (1ull << 17), kInputPage),
            kHvStatusInvalidHypercallInput);
  EXPECT_EQ(port_->messages, 0);
}

TEST_F(DispatcherTest, PostMessageBadInputGpas) {
  const HvPostMessageInput in = Message(kVmbusConnection, 1, 8);
  Put(kInputPage, &in, sizeof(in));
  EXPECT_EQ(Call(kHvCallPostMessage, kInputPage + 4),
            kHvStatusInvalidAlignment);
  // Crosses into the next page.
  EXPECT_EQ(Call(kHvCallPostMessage, kInputPage + kPageSize - 248),
            kHvStatusInvalidAlignment);
  EXPECT_EQ(Call(kHvCallPostMessage, kRamSize), kHvStatusInvalidAlignment);
  EXPECT_EQ(Call(kHvCallPostMessage, kRamSize + 0x100000),
            kHvStatusInvalidAlignment);
  EXPECT_EQ(Call(kHvCallPostMessage, 0xFFFFFFFFFFFFF000ull),
            kHvStatusInvalidAlignment);
  EXPECT_EQ(port_->messages, 0);
}

TEST_F(DispatcherTest, PostMessageBadFields) {
  EXPECT_EQ(PostAt(kInputPage, Message(kVmbusConnection, 1, 241)),
            kHvStatusInvalidParameter);
  EXPECT_EQ(PostAt(kInputPage, Message(kVmbusConnection, 1, 0xFFFFFFFF)),
            kHvStatusInvalidParameter);
  EXPECT_EQ(PostAt(kInputPage, Message(kVmbusConnection, 0, 8)),
            kHvStatusInvalidParameter);
  EXPECT_EQ(PostAt(kInputPage, Message(kVmbusConnection, 0x80000010, 8)),
            kHvStatusInvalidParameter);
  HvPostMessageInput reserved = Message(kVmbusConnection, 1, 8);
  reserved.reserved = 1;
  EXPECT_EQ(PostAt(kInputPage, reserved), kHvStatusInvalidParameter);
  EXPECT_EQ(port_->messages, 0);
}

TEST_F(DispatcherTest, PostMessageConnections) {
  EXPECT_EQ(PostAt(kInputPage, Message(1, 1, 8)), kHvStatusInvalidConnectionId);
  // Reserved bits of the connection id do not alias id 4.
  EXPECT_EQ(PostAt(kInputPage, Message(0x01000004, 1, 8)),
            kHvStatusInvalidConnectionId);
  // An event connection is not a message connection.
  EXPECT_EQ(PostAt(kInputPage, Message(kEventConnection, 1, 8)),
            kHvStatusInvalidConnectionId);
  port_->status = kHvStatusInsufficientBuffers;
  EXPECT_EQ(PostAt(kInputPage, Message(kVmbusConnection, 1, 8)),
            kHvStatusInsufficientBuffers);
  connections_.UnregisterMessagePort(kVmbusConnection);
  EXPECT_EQ(PostAt(kInputPage, Message(kVmbusConnection, 1, 8)),
            kHvStatusInvalidConnectionId);
}

TEST_F(DispatcherTest, SignalEventFastAndSlow) {
  const uint64_t fast_input = kEventConnection | (uint64_t{77} << 32);
  EXPECT_EQ(Call(kHvCallSignalEvent | kHcFast, fast_input), kHvStatusSuccess);
  EXPECT_EQ(port_->events, 1);
  EXPECT_EQ(port_->last_flag, 77);

  HvSignalEventInput in{kEventConnection, 12, 0};
  Put(kInputPage + 8, &in, sizeof(in));
  EXPECT_EQ(Call(kHvCallSignalEvent, kInputPage + 8), kHvStatusSuccess);
  EXPECT_EQ(port_->last_flag, 12);
  EXPECT_EQ(Call(kHvCallSignalEvent, kInputPage + 9),
            kHvStatusInvalidAlignment);
  EXPECT_EQ(Call(kHvCallSignalEvent, kRamSize), kHvStatusInvalidAlignment);
  EXPECT_EQ(port_->events, 2);
}

TEST_F(DispatcherTest, SignalEventErrors) {
  EXPECT_EQ(Call(kHvCallSignalEvent | kHcFast, 999),
            kHvStatusInvalidConnectionId);
  EXPECT_EQ(Call(kHvCallSignalEvent | kHcFast,
                 kEventConnection | (uint64_t{1} << 48)),
            kHvStatusInvalidParameter);
  EXPECT_EQ(Call(kHvCallSignalEvent | kHcFast | (1ull << 32), kEventConnection),
            kHvStatusInvalidHypercallInput);
  port_->status = kHvStatusInvalidParameter;  // a flag the port lacks
  EXPECT_EQ(Call(kHvCallSignalEvent | kHcFast, kEventConnection),
            kHvStatusInvalidParameter);
}

TEST_F(DispatcherTest, NotifyLongSpinWaitIsAHint) {
  EXPECT_EQ(Call(kHvCallNotifyLongSpinWait | kHcFast, 4096), kHvStatusSuccess);
  EXPECT_EQ(Call(kHvCallNotifyLongSpinWait, kInputPage), kHvStatusSuccess);
  EXPECT_EQ(Call(kHvCallNotifyLongSpinWait, kRamSize),
            kHvStatusInvalidAlignment);
}

TEST(ConnectionTableTest, Registration) {
  ConnectionTable table;
  auto port = std::make_shared<RecordingPort>();
  EXPECT_TRUE(table.RegisterMessagePort(1, port).ok());
  EXPECT_EQ(table.RegisterMessagePort(1, port).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(table.RegisterMessagePort(0x1000000, port).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(table.RegisterEventPort(2, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(table.RegisterEventPort(1, port).ok());  // separate namespace
  EXPECT_EQ(table.FindMessagePort(1), port);
  EXPECT_EQ(table.FindMessagePort(2), nullptr);
}

}  // namespace
}  // namespace hvcore::hyperv
