#ifndef HVSTACK_VMMS_EVENT_STREAM_H_
#define HVSTACK_VMMS_EVENT_STREAM_H_

#include <functional>

#include "absl/status/status.h"
#include "proto/hvstack/v1/vm.pb.h"
#include "vmms/vm_store.h"

namespace vmms {

// The body of the public WatchEvents: sends the events after
// request.after_sequence() through `write`, then (follow) every event
// committed later, until `write` fails (the client left), `cancelled()` is
// true or the store closes its watchers.
//
// No gaps, no duplicates: the stream keeps the sequence of the last event it
// sent and always reads "events after that sequence" from the table; it waits
// only while the committed sequence is not above it. A change committed
// between a read and the wait is therefore either in the read or makes the
// wait return at once.
absl::Status StreamEvents(
    VmStore& store, const hvstack::v1::WatchEventsRequest& request,
    const std::function<bool()>& cancelled,
    const std::function<bool(const hvstack::v1::VmEvent&)>& write);

}  // namespace vmms

#endif  // HVSTACK_VMMS_EVENT_STREAM_H_
