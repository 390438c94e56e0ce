#ifndef HVSTACK_VMWP_NETWORK_CONFIG_H_
#define HVSTACK_VMWP_NETWORK_CONFIG_H_

// The VM's network adapters from WorkerConfig.nics: one netvsp adapter per
// WorkerNic, each on the TAP descriptor vmms opened and handed over. The
// worker opens nothing.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "vmwp/vmbus/channel_messages.h"
#include "vmwp/vsp/net/net_adapter.h"

namespace vmwp {

// The instance GUID of adapter `index` of the VM with `vm_uuid`: the same
// across boots of that VM, different for each index (and from the IC and
// storage instances): "hvst" "ni" <index> + 8 bytes from the VM's uuid.
vmbus::Guid NetAdapterInstance(const std::string& vm_uuid, uint32_t index);

// Takes ownership of every TAP descriptor (also on failure). Errors are
// INVALID_ARGUMENT naming the adapter (index and host interface) and the
// problem: a MAC that is not 6 bytes, multicast or zero; an MTU outside
// 68..9000; a descriptor that is not open; an index used twice.
absl::StatusOr<std::vector<std::unique_ptr<vsp::net::NetAdapter>>>
BuildNetAdapters(
    const google::protobuf::RepeatedPtrField<hvstack::internal::WorkerNic>&
        nics,
    const std::string& vm_uuid, std::function<absl::Status()> on_thread_start);

// What GetStatus reports for `adapter`.
hvstack::internal::WorkerNicStatus NicStatus(
    const vsp::net::NetAdapter& adapter);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_NETWORK_CONFIG_H_
