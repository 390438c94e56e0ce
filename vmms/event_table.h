#ifndef HVSTACK_VMMS_EVENT_TABLE_H_
#define HVSTACK_VMMS_EVENT_TABLE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/hvstack/v1/vm.pb.h"
#include "vmms/sqlite_db.h"

namespace vmms {

// The `events` table (schema v3): SQL only, no locking. VmStore calls these
// inside its own transactions, so that an event is committed together with
// the change it describes.

// Inserts `event` (its sequence is assigned by SQLite and returned), then trims
// the table to the newest `retention` events.
absl::StatusOr<uint64_t> InsertEvent(Database& db,
                                     const hvstack::v1::VmEvent& event,
                                     int64_t retention);

// Up to `limit` events with a sequence above `after_sequence`, in order.
// OUT_OF_RANGE when `after_sequence` > 0 and events after it were already
// trimmed (the message names the oldest retained sequence).
absl::StatusOr<std::vector<hvstack::v1::VmEvent>> ReadEventsAfter(
    Database& db, uint64_t after_sequence, int limit);

// The largest sequence ever assigned (0 when none).
absl::StatusOr<uint64_t> LastEventSequence(Database& db);

}  // namespace vmms

#endif  // HVSTACK_VMMS_EVENT_TABLE_H_
