#include "vmwp/vmbus/hvcore_bridge.h"

#include <memory>

namespace vmbus {
namespace {

// Both enums carry the TLFS's HV_STATUS values.
hvcore::hyperv::HvStatus ToHvcore(HvStatus s) {
  return static_cast<hvcore::hyperv::HvStatus>(static_cast<uint16_t>(s));
}
static_assert(static_cast<uint16_t>(HvStatus::kInvalidConnectionId) ==
              hvcore::hyperv::kHvStatusInvalidConnectionId);
static_assert(static_cast<uint16_t>(HvStatus::kInvalidParameter) ==
              hvcore::hyperv::kHvStatusInvalidParameter);
static_assert(static_cast<uint16_t>(HvStatus::kSuccess) ==
              hvcore::hyperv::kHvStatusSuccess);

class MessagePort final : public hvcore::hyperv::MessagePortHandler {
 public:
  MessagePort(VmbusServer& server, uint32_t connection_id)
      : server_(server), connection_id_(connection_id) {}
  hvcore::hyperv::HvStatus OnMessage(
      uint32_t vp, uint32_t message_type,
      std::span<const uint8_t> payload) override {
    return ToHvcore(
        server_.OnPostMessage(vp, connection_id_, message_type, payload));
  }

 private:
  VmbusServer& server_;
  const uint32_t connection_id_;
};

class EventPort final : public hvcore::hyperv::EventPortHandler {
 public:
  EventPort(VmbusServer& server, uint32_t connection_id)
      : server_(server), connection_id_(connection_id) {}
  hvcore::hyperv::HvStatus OnEvent(uint32_t vp, uint16_t flag) override {
    return ToHvcore(server_.OnSignalEvent(vp, connection_id_, flag));
  }

 private:
  VmbusServer& server_;
  const uint32_t connection_id_;
};

}  // namespace

absl::Status RegisterVmbusMessagePorts(hvcore::hyperv::ConnectionTable& table,
                                       VmbusServer& server) {
  for (uint32_t id : {kMessageConnectionId, kMessageConnectionId4}) {
    if (absl::Status s = table.RegisterMessagePort(
            id, std::make_shared<MessagePort>(server, id));
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status RegisterChannelEventPort(hvcore::hyperv::ConnectionTable& table,
                                      VmbusServer& server, uint32_t relid) {
  const uint32_t id = VmbusServer::ConnectionIdForRelid(relid);
  return table.RegisterEventPort(id, std::make_shared<EventPort>(server, id));
}

}  // namespace vmbus
