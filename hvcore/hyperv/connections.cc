#include "hvcore/hyperv/connections.h"

#include "absl/strings/str_format.h"

namespace hvcore::hyperv {
namespace {

template <typename Map, typename Handler>
absl::Status Register(Map& map, uint32_t id, Handler handler,
                      const char* kind) {
  if (id & ~kConnectionIdMask) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s connection id %#x is not a 24-bit id", kind, id));
  }
  if (handler == nullptr) {
    return absl::InvalidArgumentError("null connection handler");
  }
  if (!map.emplace(id, std::move(handler)).second) {
    return absl::AlreadyExistsError(absl::StrFormat(
        "%s connection id %#x is already registered", kind, id));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ConnectionTable::RegisterMessagePort(
    uint32_t connection_id, std::shared_ptr<MessagePortHandler> handler) {
  absl::MutexLock lock(&mu_);
  return Register(messages_, connection_id, std::move(handler), "message");
}

absl::Status ConnectionTable::RegisterEventPort(
    uint32_t connection_id, std::shared_ptr<EventPortHandler> handler) {
  absl::MutexLock lock(&mu_);
  return Register(events_, connection_id, std::move(handler), "event");
}

void ConnectionTable::UnregisterMessagePort(uint32_t connection_id) {
  absl::MutexLock lock(&mu_);
  messages_.erase(connection_id);
}

void ConnectionTable::UnregisterEventPort(uint32_t connection_id) {
  absl::MutexLock lock(&mu_);
  events_.erase(connection_id);
}

std::shared_ptr<MessagePortHandler> ConnectionTable::FindMessagePort(
    uint32_t connection_id) {
  absl::MutexLock lock(&mu_);
  auto it = messages_.find(connection_id);
  return it == messages_.end() ? nullptr : it->second;
}

std::shared_ptr<EventPortHandler> ConnectionTable::FindEventPort(
    uint32_t connection_id) {
  absl::MutexLock lock(&mu_);
  auto it = events_.find(connection_id);
  return it == events_.end() ? nullptr : it->second;
}

}  // namespace hvcore::hyperv
