#include "vmms/migrations.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace vmms {
namespace {

// States are stored by name (see vm_store.cc) so that the database reads well
// in the sqlite3 CLI.
constexpr Migration kMigrations[] = {
    {1, "vms and their state history", R"sql(
CREATE TABLE vms (
  uuid TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL UNIQUE,
  vcpus INTEGER NOT NULL CHECK (vcpus > 0),
  memory_mib INTEGER NOT NULL CHECK (memory_mib > 0),
  kernel_path TEXT NOT NULL,
  cmdline TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL
    CHECK (state IN ('off', 'starting', 'running', 'stopping', 'crashed')),
  state_reason TEXT NOT NULL DEFAULT '',
  create_time_us INTEGER NOT NULL,
  update_time_us INTEGER NOT NULL,
  state_change_time_us INTEGER NOT NULL,
  worker_pid INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE vm_state_history (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  vm_uuid TEXT NOT NULL REFERENCES vms(uuid) ON DELETE CASCADE,
  from_state TEXT,
  to_state TEXT NOT NULL,
  reason TEXT NOT NULL,
  time_us INTEGER NOT NULL
);
CREATE INDEX vm_state_history_by_vm ON vm_state_history(vm_uuid, id);
)sql"},
    {2, "initrd path and in-place reboot counter", R"sql(
ALTER TABLE vms ADD COLUMN initrd_path TEXT NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN reboot_count INTEGER NOT NULL DEFAULT 0
  CHECK (reboot_count >= 0);
)sql"},
    {3, "event log", R"sql(
CREATE TABLE events (
  sequence INTEGER PRIMARY KEY AUTOINCREMENT,
  time_us INTEGER NOT NULL,
  vm_uuid TEXT NOT NULL,
  vm_name TEXT NOT NULL,
  kind TEXT NOT NULL
    CHECK (kind IN ('created', 'state_changed', 'rebooted', 'deleted')),
  state TEXT NOT NULL,
  previous_state TEXT NOT NULL DEFAULT '',
  reason TEXT NOT NULL DEFAULT '',
  peer TEXT NOT NULL DEFAULT ''
);
)sql"},
    {4, "worker process start time (identity check on reattach)", R"sql(
ALTER TABLE vms ADD COLUMN worker_start_ticks INTEGER NOT NULL DEFAULT 0;
)sql"},
    // SQLite cannot alter a CHECK constraint: the tables are rebuilt. The
    // history goes aside first, so that dropping the old `vms` cascades to
    // nothing, and comes back with its ids.
    {5,
     "states paused/saving/restoring, autostart, restart policy, 'updated' "
     "events",
     R"sql(
CREATE TABLE vm_state_history_v4 AS SELECT * FROM vm_state_history;
DROP TABLE vm_state_history;
CREATE TABLE vms_v5 (
  uuid TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL UNIQUE,
  vcpus INTEGER NOT NULL CHECK (vcpus > 0),
  memory_mib INTEGER NOT NULL CHECK (memory_mib > 0),
  kernel_path TEXT NOT NULL,
  cmdline TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL
    CHECK (state IN ('off', 'starting', 'running', 'paused', 'stopping',
                     'saving', 'restoring', 'crashed')),
  state_reason TEXT NOT NULL DEFAULT '',
  create_time_us INTEGER NOT NULL,
  update_time_us INTEGER NOT NULL,
  state_change_time_us INTEGER NOT NULL,
  worker_pid INTEGER NOT NULL DEFAULT 0,
  initrd_path TEXT NOT NULL DEFAULT '',
  reboot_count INTEGER NOT NULL DEFAULT 0 CHECK (reboot_count >= 0),
  worker_start_ticks INTEGER NOT NULL DEFAULT 0,
  autostart INTEGER NOT NULL DEFAULT 0 CHECK (autostart IN (0, 1)),
  restart_policy TEXT NOT NULL DEFAULT 'never'
    CHECK (restart_policy IN ('never', 'on-failure', 'always')),
  restart_count INTEGER NOT NULL DEFAULT 0 CHECK (restart_count >= 0)
);
INSERT INTO vms_v5 (uuid, name, vcpus, memory_mib, kernel_path, cmdline,
  state, state_reason, create_time_us, update_time_us, state_change_time_us,
  worker_pid, initrd_path, reboot_count, worker_start_ticks)
SELECT uuid, name, vcpus, memory_mib, kernel_path, cmdline, state,
  state_reason, create_time_us, update_time_us, state_change_time_us,
  worker_pid, initrd_path, reboot_count, worker_start_ticks FROM vms;
DROP TABLE vms;
ALTER TABLE vms_v5 RENAME TO vms;
CREATE TABLE vm_state_history (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  vm_uuid TEXT NOT NULL REFERENCES vms(uuid) ON DELETE CASCADE,
  from_state TEXT,
  to_state TEXT NOT NULL,
  reason TEXT NOT NULL,
  time_us INTEGER NOT NULL
);
INSERT INTO vm_state_history (id, vm_uuid, from_state, to_state, reason,
  time_us)
SELECT id, vm_uuid, from_state, to_state, reason, time_us
  FROM vm_state_history_v4 ORDER BY id;
DROP TABLE vm_state_history_v4;
CREATE INDEX vm_state_history_by_vm ON vm_state_history(vm_uuid, id);
CREATE TABLE events_v5 (
  sequence INTEGER PRIMARY KEY AUTOINCREMENT,
  time_us INTEGER NOT NULL,
  vm_uuid TEXT NOT NULL,
  vm_name TEXT NOT NULL,
  kind TEXT NOT NULL
    CHECK (kind IN ('created', 'state_changed', 'rebooted', 'deleted',
                    'updated')),
  state TEXT NOT NULL,
  previous_state TEXT NOT NULL DEFAULT '',
  reason TEXT NOT NULL DEFAULT '',
  peer TEXT NOT NULL DEFAULT ''
);
INSERT INTO events_v5 SELECT * FROM events ORDER BY sequence;
DROP TABLE events;
ALTER TABLE events_v5 RENAME TO events;
)sql"},
    {6, "who asked for each state change", R"sql(
ALTER TABLE vm_state_history ADD COLUMN peer TEXT NOT NULL DEFAULT '';
)sql"},
    {7, "sandbox: the VM's uid slot and whether its worker is sandboxed", R"sql(
ALTER TABLE vms ADD COLUMN uid_slot INTEGER;
ALTER TABLE vms ADD COLUMN sandboxed INTEGER NOT NULL DEFAULT 1;
CREATE UNIQUE INDEX vms_uid_slot ON vms (uid_slot);
)sql"},
    {8, "per-VM switch for the Hyper-V interface and VMBus", R"sql(
ALTER TABLE vms ADD COLUMN disable_enlightenments INTEGER NOT NULL DEFAULT 0;
)sql"},
    // The kind CHECK grows: the table is rebuilt with its rows and its
    // AUTOINCREMENT counter (sequences are never reused, even when retention
    // had emptied the table).
    {9, "guest heartbeat events", R"sql(
CREATE TABLE events_v9 (
  sequence INTEGER PRIMARY KEY AUTOINCREMENT,
  time_us INTEGER NOT NULL,
  vm_uuid TEXT NOT NULL,
  vm_name TEXT NOT NULL,
  kind TEXT NOT NULL
    CHECK (kind IN ('created', 'state_changed', 'rebooted', 'deleted',
                    'updated', 'guest_heartbeat')),
  state TEXT NOT NULL,
  previous_state TEXT NOT NULL DEFAULT '',
  reason TEXT NOT NULL DEFAULT '',
  peer TEXT NOT NULL DEFAULT ''
);
INSERT INTO events_v9 SELECT * FROM events ORDER BY sequence;
DELETE FROM sqlite_sequence WHERE name = 'events_v9';
INSERT INTO sqlite_sequence (name, seq)
  SELECT 'events_v9', seq FROM sqlite_sequence WHERE name = 'events';
DROP TABLE events;
ALTER TABLE events_v9 RENAME TO events;
)sql"},
    // One row per attached disk. A migration that rebuilds `vms` must move
    // these rows aside first (as v5 did with the history): dropping `vms`
    // cascades to them.
    {10, "disks (issue 11)", R"sql(
CREATE TABLE vm_disks (
  vm_uuid TEXT NOT NULL REFERENCES vms(uuid) ON DELETE CASCADE,
  position INTEGER NOT NULL CHECK (position >= 0),
  path TEXT NOT NULL,
  format TEXT NOT NULL CHECK (format IN ('raw', 'qcow2', 'vhdx')),
  read_only INTEGER NOT NULL CHECK (read_only IN (0, 1)),
  controller INTEGER NOT NULL CHECK (controller >= 0),
  target INTEGER NOT NULL CHECK (target >= 0),
  lun INTEGER NOT NULL CHECK (lun >= 0),
  serial TEXT NOT NULL,
  PRIMARY KEY (vm_uuid, position),
  UNIQUE (vm_uuid, controller, target, lun),
  UNIQUE (vm_uuid, path)
);
)sql"},
    // The guest's own crash reports: the per-VM policy, the last report, and
    // an event kind whose events carry the report (the kind CHECK grows: the
    // events table is rebuilt as in v9).
    {11, "guest crash policy, last guest crash, guest_crashed events", R"sql(
ALTER TABLE vms ADD COLUMN on_guest_crash TEXT NOT NULL DEFAULT 'stop'
  CHECK (on_guest_crash IN ('stop', 'restart', 'preserve'));
CREATE TABLE guest_crashes (
  vm_uuid TEXT PRIMARY KEY NOT NULL REFERENCES vms(uuid) ON DELETE CASCADE,
  -- A serialized hvstack.v1.GuestCrash.
  report BLOB NOT NULL,
  time_us INTEGER NOT NULL,
  vp INTEGER NOT NULL
);
CREATE TABLE events_v11 (
  sequence INTEGER PRIMARY KEY AUTOINCREMENT,
  time_us INTEGER NOT NULL,
  vm_uuid TEXT NOT NULL,
  vm_name TEXT NOT NULL,
  kind TEXT NOT NULL
    CHECK (kind IN ('created', 'state_changed', 'rebooted', 'deleted',
                    'updated', 'guest_heartbeat', 'guest_crashed')),
  state TEXT NOT NULL,
  previous_state TEXT NOT NULL DEFAULT '',
  reason TEXT NOT NULL DEFAULT '',
  peer TEXT NOT NULL DEFAULT '',
  -- KIND_GUEST_CRASHED: a serialized hvstack.v1.GuestCrash.
  guest_crash BLOB
);
INSERT INTO events_v11 (sequence, time_us, vm_uuid, vm_name, kind, state,
  previous_state, reason, peer)
SELECT sequence, time_us, vm_uuid, vm_name, kind, state, previous_state,
  reason, peer FROM events ORDER BY sequence;
DELETE FROM sqlite_sequence WHERE name = 'events_v11';
INSERT INTO sqlite_sequence (name, seq)
  SELECT 'events_v11', seq FROM sqlite_sequence WHERE name = 'events';
DROP TABLE events;
ALTER TABLE events_v11 RENAME TO events;
)sql"},
    // One row per network adapter. A MAC is unique per vmms (UNIQUE), the
    // index per VM (the primary key). A future rebuild of `vms` must move
    // these rows aside first, as v5 did with the history: dropping `vms`
    // cascades.
    {12, "network adapters", R"sql(
CREATE TABLE vm_nics (
  vm_uuid TEXT NOT NULL REFERENCES vms(uuid) ON DELETE CASCADE,
  idx INTEGER NOT NULL CHECK (idx >= 0 AND idx < 8),
  mac TEXT NOT NULL UNIQUE CHECK (length(mac) = 17),
  bridge TEXT NOT NULL DEFAULT '',
  mtu INTEGER NOT NULL DEFAULT 1500 CHECK (mtu >= 68 AND mtu <= 9000),
  PRIMARY KEY (vm_uuid, idx)
);
)sql"},
    // Which backend runs each VM (fixed at creation) and, for libvirt VMs,
    // the accelerator of their domain.
    {13, "backend of each VM (hvstack or libvirt) and libvirt's accelerator",
     R"sql(
ALTER TABLE vms ADD COLUMN backend TEXT NOT NULL DEFAULT 'hvstack'
  CHECK (backend IN ('hvstack', 'libvirt'));
ALTER TABLE vms ADD COLUMN libvirt_accelerator TEXT NOT NULL DEFAULT 'kvm'
  CHECK (libvirt_accelerator IN ('kvm', 'tcg'));
)sql"},
    {14,
     "the libvirt domain an adopted VM is (empty: vmms defines the VM's "
     "domain)",
     R"sql(
ALTER TABLE vms ADD COLUMN libvirt_adopted_domain TEXT NOT NULL DEFAULT '';
)sql"},
    // Issue 14: the state 'saved' (the state CHECK grows: `vms` is rebuilt;
    // every table that references it goes aside first, as in v5, so that
    // dropping the old `vms` cascades to nothing) and what each save wrote.
    {15, "state saved and saved-state files (issue 14)", R"sql(
CREATE TABLE vm_state_history_v14 AS SELECT * FROM vm_state_history;
CREATE TABLE vm_disks_v14 AS SELECT * FROM vm_disks;
CREATE TABLE guest_crashes_v14 AS SELECT * FROM guest_crashes;
CREATE TABLE vm_nics_v14 AS SELECT * FROM vm_nics;
DROP TABLE vm_state_history;
DROP TABLE vm_disks;
DROP TABLE guest_crashes;
DROP TABLE vm_nics;
CREATE TABLE vms_v15 (
  uuid TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL UNIQUE,
  vcpus INTEGER NOT NULL CHECK (vcpus > 0),
  memory_mib INTEGER NOT NULL CHECK (memory_mib > 0),
  kernel_path TEXT NOT NULL,
  cmdline TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL
    CHECK (state IN ('off', 'starting', 'running', 'paused', 'stopping',
                     'saving', 'restoring', 'crashed', 'saved')),
  state_reason TEXT NOT NULL DEFAULT '',
  create_time_us INTEGER NOT NULL,
  update_time_us INTEGER NOT NULL,
  state_change_time_us INTEGER NOT NULL,
  worker_pid INTEGER NOT NULL DEFAULT 0,
  initrd_path TEXT NOT NULL DEFAULT '',
  reboot_count INTEGER NOT NULL DEFAULT 0 CHECK (reboot_count >= 0),
  worker_start_ticks INTEGER NOT NULL DEFAULT 0,
  autostart INTEGER NOT NULL DEFAULT 0 CHECK (autostart IN (0, 1)),
  restart_policy TEXT NOT NULL DEFAULT 'never'
    CHECK (restart_policy IN ('never', 'on-failure', 'always')),
  restart_count INTEGER NOT NULL DEFAULT 0 CHECK (restart_count >= 0),
  uid_slot INTEGER,
  sandboxed INTEGER NOT NULL DEFAULT 1,
  disable_enlightenments INTEGER NOT NULL DEFAULT 0,
  on_guest_crash TEXT NOT NULL DEFAULT 'stop'
    CHECK (on_guest_crash IN ('stop', 'restart', 'preserve')),
  backend TEXT NOT NULL DEFAULT 'hvstack'
    CHECK (backend IN ('hvstack', 'libvirt')),
  libvirt_accelerator TEXT NOT NULL DEFAULT 'kvm'
    CHECK (libvirt_accelerator IN ('kvm', 'tcg')),
  libvirt_adopted_domain TEXT NOT NULL DEFAULT ''
);
INSERT INTO vms_v15 (uuid, name, vcpus, memory_mib, kernel_path, cmdline,
  state, state_reason, create_time_us, update_time_us, state_change_time_us,
  worker_pid, initrd_path, reboot_count, worker_start_ticks, autostart,
  restart_policy, restart_count, uid_slot, sandboxed, disable_enlightenments,
  on_guest_crash, backend, libvirt_accelerator, libvirt_adopted_domain)
SELECT uuid, name, vcpus, memory_mib, kernel_path, cmdline, state,
  state_reason, create_time_us, update_time_us, state_change_time_us,
  worker_pid, initrd_path, reboot_count, worker_start_ticks, autostart,
  restart_policy, restart_count, uid_slot, sandboxed, disable_enlightenments,
  on_guest_crash, backend, libvirt_accelerator, libvirt_adopted_domain
  FROM vms;
DROP TABLE vms;
ALTER TABLE vms_v15 RENAME TO vms;
CREATE UNIQUE INDEX vms_uid_slot ON vms (uid_slot);
CREATE TABLE vm_state_history (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  vm_uuid TEXT NOT NULL REFERENCES vms(uuid) ON DELETE CASCADE,
  from_state TEXT,
  to_state TEXT NOT NULL,
  reason TEXT NOT NULL,
  time_us INTEGER NOT NULL,
  peer TEXT NOT NULL DEFAULT ''
);
INSERT INTO vm_state_history (id, vm_uuid, from_state, to_state, reason,
  time_us, peer)
SELECT id, vm_uuid, from_state, to_state, reason, time_us, peer
  FROM vm_state_history_v14 ORDER BY id;
DROP TABLE vm_state_history_v14;
CREATE INDEX vm_state_history_by_vm ON vm_state_history(vm_uuid, id);
CREATE TABLE vm_disks (
  vm_uuid TEXT NOT NULL REFERENCES vms(uuid) ON DELETE CASCADE,
  position INTEGER NOT NULL CHECK (position >= 0),
  path TEXT NOT NULL,
  format TEXT NOT NULL CHECK (format IN ('raw', 'qcow2', 'vhdx')),
  read_only INTEGER NOT NULL CHECK (read_only IN (0, 1)),
  controller INTEGER NOT NULL CHECK (controller >= 0),
  target INTEGER NOT NULL CHECK (target >= 0),
  lun INTEGER NOT NULL CHECK (lun >= 0),
  serial TEXT NOT NULL,
  PRIMARY KEY (vm_uuid, position),
  UNIQUE (vm_uuid, controller, target, lun),
  UNIQUE (vm_uuid, path)
);
INSERT INTO vm_disks SELECT * FROM vm_disks_v14;
DROP TABLE vm_disks_v14;
CREATE TABLE guest_crashes (
  vm_uuid TEXT PRIMARY KEY NOT NULL REFERENCES vms(uuid) ON DELETE CASCADE,
  -- A serialized hvstack.v1.GuestCrash.
  report BLOB NOT NULL,
  time_us INTEGER NOT NULL,
  vp INTEGER NOT NULL
);
INSERT INTO guest_crashes SELECT * FROM guest_crashes_v14;
DROP TABLE guest_crashes_v14;
CREATE TABLE vm_nics (
  vm_uuid TEXT NOT NULL REFERENCES vms(uuid) ON DELETE CASCADE,
  idx INTEGER NOT NULL CHECK (idx >= 0 AND idx < 8),
  mac TEXT NOT NULL UNIQUE CHECK (length(mac) = 17),
  bridge TEXT NOT NULL DEFAULT '',
  mtu INTEGER NOT NULL DEFAULT 1500 CHECK (mtu >= 68 AND mtu <= 9000),
  PRIMARY KEY (vm_uuid, idx)
);
INSERT INTO vm_nics SELECT * FROM vm_nics_v14;
DROP TABLE vm_nics_v14;
-- One row per Saved (or Restoring) VM: the files its save wrote (under
-- vmms's state directory) and what they hold. Removed with the saved state.
CREATE TABLE vm_saved_states (
  vm_uuid TEXT PRIMARY KEY NOT NULL REFERENCES vms(uuid) ON DELETE CASCADE,
  save_time_us INTEGER NOT NULL,
  saved_from TEXT NOT NULL CHECK (saved_from IN ('running', 'paused')),
  state_file TEXT NOT NULL,
  memory_file TEXT NOT NULL,
  state_bytes INTEGER NOT NULL CHECK (state_bytes >= 0),
  memory_pages_written INTEGER NOT NULL CHECK (memory_pages_written >= 0),
  memory_pages_total INTEGER NOT NULL CHECK (memory_pages_total >= 0),
  save_duration_us INTEGER NOT NULL DEFAULT 0
);
)sql"},
    {16, "checkpoints (issue 14)", R"sql(
-- A tree per VM. `config` is the serialized hvstack.v1.VmConfig at that
-- moment (its disks name the frozen images, see vm_checkpoint_disks);
-- `saved_state` a serialized hvstack.v1.SavedStateInfo naming the
-- checkpoint's own copy of a Saved VM's files (NULL for an Off VM). At most
-- one checkpoint per VM is current: the one new checkpoints branch from.
CREATE TABLE vm_checkpoints (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  vm_uuid TEXT NOT NULL REFERENCES vms(uuid) ON DELETE CASCADE,
  name TEXT NOT NULL,
  parent_id INTEGER REFERENCES vm_checkpoints(id),
  create_time_us INTEGER NOT NULL,
  vm_state TEXT NOT NULL CHECK (vm_state IN ('off', 'saved')),
  config BLOB NOT NULL,
  saved_state BLOB,
  is_current INTEGER NOT NULL DEFAULT 0 CHECK (is_current IN (0, 1)),
  UNIQUE (vm_uuid, name)
);
CREATE INDEX vm_checkpoints_by_parent ON vm_checkpoints(parent_id);
-- Each disk of a checkpoint: the image that holds its content at that moment
-- (frozen: nothing writes it any more). `owned`: an overlay vmms created under
-- the VM's checkpoint directory (deleted or merged with the checkpoint), else
-- the user's own image (never touched).
CREATE TABLE vm_checkpoint_disks (
  checkpoint_id INTEGER NOT NULL
    REFERENCES vm_checkpoints(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  path TEXT NOT NULL,
  format TEXT NOT NULL,
  owned INTEGER NOT NULL CHECK (owned IN (0, 1)),
  PRIMARY KEY (checkpoint_id, position)
);
)sql"},
};

}  // namespace

std::span<const Migration> SchemaMigrations() { return kMigrations; }

absl::StatusOr<int> SchemaVersion(Database& db) {
  absl::StatusOr<Statement> stmt =
      db.Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version");
  if (!stmt.ok()) return stmt.status();
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  return static_cast<int>(stmt->ColumnInt64(0));
}

absl::StatusOr<int> ApplyMigrations(Database& db,
                                    std::span<const Migration> migrations) {
  if (absl::Status s = db.Exec("CREATE TABLE IF NOT EXISTS schema_version ("
                               " version INTEGER PRIMARY KEY NOT NULL,"
                               " description TEXT NOT NULL,"
                               " applied_time_us INTEGER NOT NULL)");
      !s.ok()) {
    return s;
  }
  absl::StatusOr<int> current = SchemaVersion(db);
  if (!current.ok()) return current.status();
  int latest = migrations.empty() ? 0 : migrations.back().version;
  if (*current > latest) {
    return absl::FailedPreconditionError(
        absl::StrCat("database schema version ", *current,
                     " is newer than this vmms understands (", latest,
                     "); run a newer vmms or restore a backup"));
  }
  for (const Migration& m : migrations) {
    if (m.version <= *current) continue;
    absl::StatusOr<Transaction> tx = Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    if (absl::Status s = db.Exec(m.sql); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("schema migration ", m.version,
                                                 ": ", s.message()));
    }
    absl::StatusOr<Statement> insert = db.Prepare(
        "INSERT INTO schema_version (version, description, applied_time_us) "
        "VALUES (?, ?, ?)");
    if (!insert.ok()) return insert.status();
    if (absl::Status s = insert->BindAll(m.version, m.description,
                                         absl::ToUnixMicros(absl::Now()));
        !s.ok()) {
      return s;
    }
    if (absl::Status s = insert->Run(); !s.ok()) return s;
    if (absl::Status s = tx->Commit(); !s.ok()) return s;
    *current = m.version;
  }
  return *current;
}

}  // namespace vmms
