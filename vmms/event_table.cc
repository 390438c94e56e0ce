#include "vmms/event_table.h"

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "vmms/vm_store.h"

namespace vmms {
namespace {

using google::protobuf::util::TimeUtil;
using hvstack::v1::VmEvent;

const char* KindName(VmEvent::Kind kind) {
  switch (kind) {
    case VmEvent::KIND_CREATED:
      return "created";
    case VmEvent::KIND_STATE_CHANGED:
      return "state_changed";
    case VmEvent::KIND_REBOOTED:
      return "rebooted";
    case VmEvent::KIND_DELETED:
      return "deleted";
    case VmEvent::KIND_UPDATED:
      return "updated";
    case VmEvent::KIND_GUEST_HEARTBEAT:
      return "guest_heartbeat";
    case VmEvent::KIND_GUEST_CRASHED:
      return "guest_crashed";
    default:
      return "unspecified";
  }
}

VmEvent::Kind KindFromName(const std::string& name) {
  if (name == "created") return VmEvent::KIND_CREATED;
  if (name == "state_changed") return VmEvent::KIND_STATE_CHANGED;
  if (name == "rebooted") return VmEvent::KIND_REBOOTED;
  if (name == "deleted") return VmEvent::KIND_DELETED;
  if (name == "updated") return VmEvent::KIND_UPDATED;
  if (name == "guest_heartbeat") return VmEvent::KIND_GUEST_HEARTBEAT;
  if (name == "guest_crashed") return VmEvent::KIND_GUEST_CRASHED;
  return VmEvent::KIND_UNSPECIFIED;
}

absl::StatusOr<int64_t> ScalarInt(Database& db, const char* sql) {
  absl::StatusOr<Statement> stmt = db.Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  return *row ? stmt->ColumnInt64(0) : 0;
}

}  // namespace

absl::StatusOr<uint64_t> InsertEvent(Database& db, const VmEvent& event,
                                     int64_t retention) {
  absl::StatusOr<Statement> stmt = db.Prepare(
      "INSERT INTO events (time_us, vm_uuid, vm_name, kind, state, "
      "previous_state, reason, peer, guest_crash) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (!stmt.ok()) return stmt.status();
  const char* previous =
      event.previous_state() == hvstack::v1::VM_STATE_UNSPECIFIED
          ? ""
          : StateName(event.previous_state());
  absl::Status s = stmt->BindAll(
      TimeUtil::TimestampToMicroseconds(event.time()), event.vm_uuid(),
      event.vm_name(), KindName(event.kind()), StateName(event.state()),
      previous, event.reason(), event.peer());
  if (!s.ok()) return s;
  s = event.has_guest_crash()
          ? stmt->BindBlob(9, event.guest_crash().SerializeAsString())
          : stmt->BindNull(9);
  if (!s.ok()) return s;
  if (s = stmt->Run(); !s.ok()) return s;
  auto sequence = static_cast<uint64_t>(sqlite3_last_insert_rowid(db.raw()));
  if (retention > 0 && static_cast<int64_t>(sequence) > retention) {
    absl::StatusOr<Statement> trim =
        db.Prepare("DELETE FROM events WHERE sequence <= ?");
    if (!trim.ok()) return trim.status();
    if (s = trim->BindAll(static_cast<int64_t>(sequence) - retention);
        !s.ok()) {
      return s;
    }
    if (s = trim->Run(); !s.ok()) return s;
  }
  return sequence;
}

absl::StatusOr<std::vector<VmEvent>> ReadEventsAfter(Database& db,
                                                     uint64_t after_sequence,
                                                     int limit) {
  if (after_sequence > 0) {
    absl::StatusOr<uint64_t> newest = LastEventSequence(db);
    if (!newest.ok()) return newest.status();
    // A client ahead of the log read another database (or made the number
    // up); waiting for that sequence could take forever.
    if (after_sequence > *newest) {
      return absl::OutOfRangeError(absl::StrCat(
          "after_sequence ", after_sequence, " is beyond the newest event (",
          *newest,
          "): sequences come from this vmms's database; resume from at most ",
          *newest, ", or 0 for the oldest retained"));
    }
    absl::StatusOr<int64_t> oldest =
        ScalarInt(db, "SELECT COALESCE(MIN(sequence), 0) FROM events");
    if (!oldest.ok()) return oldest.status();
    absl::StatusOr<uint64_t> last = LastEventSequence(db);
    if (!last.ok()) return last.status();
    // Events after `after_sequence` exist (or existed) but the first of them
    // is gone.
    bool trimmed = *oldest > 0
                       ? static_cast<uint64_t>(*oldest) > after_sequence + 1
                       : *last > after_sequence;
    if (trimmed) {
      return absl::OutOfRangeError(absl::StrCat(
          "events after sequence ", after_sequence,
          " were trimmed (vmms keeps the newest --event-retention events); "
          "the oldest retained is ",
          *oldest, ": resume from ", *oldest > 0 ? *oldest - 1 : 0,
          " or 0 and reconcile with ListVms"));
    }
  }
  absl::StatusOr<Statement> stmt = db.Prepare(
      "SELECT sequence, time_us, vm_uuid, vm_name, kind, state, "
      "previous_state, reason, peer, guest_crash FROM events WHERE sequence > "
      "? "
      "ORDER BY sequence LIMIT ?");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s =
          stmt->BindAll(static_cast<int64_t>(after_sequence), limit);
      !s.ok()) {
    return s;
  }
  std::vector<VmEvent> events;
  while (true) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    VmEvent& event = events.emplace_back();
    event.set_sequence(static_cast<uint64_t>(stmt->ColumnInt64(0)));
    *event.mutable_time() =
        TimeUtil::MicrosecondsToTimestamp(stmt->ColumnInt64(1));
    event.set_vm_uuid(stmt->ColumnText(2));
    event.set_vm_name(stmt->ColumnText(3));
    event.set_kind(KindFromName(stmt->ColumnText(4)));
    event.set_state(StateFromName(stmt->ColumnText(5)));
    event.set_previous_state(StateFromName(stmt->ColumnText(6)));
    event.set_reason(stmt->ColumnText(7));
    event.set_peer(stmt->ColumnText(8));
    if (!stmt->ColumnIsNull(9) &&
        !event.mutable_guest_crash()->ParseFromString(stmt->ColumnBlob(9))) {
      // Written by this vmms; unreadable means a damaged database: the event
      // still says what happened in `reason`.
      event.clear_guest_crash();
    }
  }
  return events;
}

absl::StatusOr<uint64_t> LastEventSequence(Database& db) {
  absl::StatusOr<int64_t> last =
      ScalarInt(db,
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = "
                "'events'), 0)");
  if (!last.ok()) return last.status();
  return static_cast<uint64_t>(*last);
}

}  // namespace vmms
