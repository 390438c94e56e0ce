#ifndef HVSTACK_HVCORE_HYPERV_CONNECTIONS_H_
#define HVSTACK_HVCORE_HYPERV_CONNECTIONS_H_

// Guest -> host connections: what HvPostMessage and HvSignalEvent reach. The
// host side (VMBus host, later other providers) registers a handler per
// connection id; the guest learns the ids from the protocol (VMBus: 1 and 4
// for messages, per-channel ids for events).

#include <cstdint>
#include <memory>
#include <span>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "hvcore/hyperv/tlfs.h"

namespace hvcore::hyperv {

class MessagePortHandler {
 public:
  virtual ~MessagePortHandler() = default;
  // A message the guest posted from VP `vp_index`. The payload is a private
  // copy (at most 240 bytes) but still untrusted. Returns the hypercall
  // status: kHvStatusSuccess, or kHvStatusInsufficientBuffers when the port's
  // queue is full (the guest retries). Called on the VP's thread, no locks
  // held; must not block for long.
  virtual HvStatus OnMessage(uint32_t vp_index, uint32_t message_type,
                             std::span<const uint8_t> payload) = 0;
};

class EventPortHandler {
 public:
  virtual ~EventPortHandler() = default;
  // The guest signalled flag `flag_number` of this connection. Returns the
  // hypercall status (kHvStatusInvalidParameter for a flag the port does not
  // have). Same threading as OnMessage.
  virtual HvStatus OnEvent(uint32_t vp_index, uint16_t flag_number) = 0;
};

class ConnectionTable {
 public:
  // AlreadyExists if the id is taken; InvalidArgument if it has bits beyond
  // the 24-bit connection id.
  absl::Status RegisterMessagePort(uint32_t connection_id,
                                   std::shared_ptr<MessagePortHandler> handler);
  absl::Status RegisterEventPort(uint32_t connection_id,
                                 std::shared_ptr<EventPortHandler> handler);
  // Calls already in flight finish with the handler they hold.
  void UnregisterMessagePort(uint32_t connection_id);
  void UnregisterEventPort(uint32_t connection_id);

  std::shared_ptr<MessagePortHandler> FindMessagePort(uint32_t connection_id);
  std::shared_ptr<EventPortHandler> FindEventPort(uint32_t connection_id);

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<uint32_t, std::shared_ptr<MessagePortHandler>> messages_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, std::shared_ptr<EventPortHandler>> events_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace hvcore::hyperv

#endif  // HVSTACK_HVCORE_HYPERV_CONNECTIONS_H_
