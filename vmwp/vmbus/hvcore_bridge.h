#ifndef HVSTACK_VMWP_VMBUS_HVCORE_BRIDGE_H_
#define HVSTACK_VMWP_VMBUS_HVCORE_BRIDGE_H_

// Wiring between the VMBus server and hvcore's SynIC (hvcore/hyperv), kept
// out of the server so that the protocol code builds and fuzzes without
// hvcore. The worker creates the HvPartition, then:
//   HvPartitionSynicPort port(partition);
//   VmbusServer server(pages, port, {...});
//   RegisterVmbusMessagePorts(partition.connections(), server);
//   relid = server.AddVsp(&vsp);
//   RegisterChannelEventPort(partition.connections(), server, *relid);

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "hvcore/hyperv/connections.h"
#include "hvcore/hyperv/hv_partition.h"
#include "vmwp/vmbus/server.h"
#include "vmwp/vmbus/synic_seam.h"

namespace vmbus {

// SynicPort over hvcore's partition (host -> guest messages and events).
class HvPartitionSynicPort final : public SynicPort {
 public:
  explicit HvPartitionSynicPort(hvcore::hyperv::HvPartition& partition)
      : partition_(partition) {}
  absl::Status PostMessage(uint32_t vp, uint8_t sint, uint32_t message_type,
                           std::span<const uint8_t> payload) override {
    return partition_.PostMessage(vp, sint, message_type, payload);
  }
  absl::Status SignalEvent(uint32_t vp, uint8_t sint, uint32_t flag) override {
    return partition_.SignalEvent(vp, sint, flag);
  }

 private:
  hvcore::hyperv::HvPartition& partition_;
};

// Routes HvPostMessage on VMBus's message connections (1, and 4 from
// protocol 5.0) to `server`, which must outlive the table's use of it.
absl::Status RegisterVmbusMessagePorts(hvcore::hyperv::ConnectionTable& table,
                                       VmbusServer& server);

// Routes HvSignalEvent on channel `relid`'s connection id to `server`.
absl::Status RegisterChannelEventPort(hvcore::hyperv::ConnectionTable& table,
                                      VmbusServer& server, uint32_t relid);

}  // namespace vmbus

#endif  // HVSTACK_VMWP_VMBUS_HVCORE_BRIDGE_H_
