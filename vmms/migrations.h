#ifndef HVSTACK_VMMS_MIGRATIONS_H_
#define HVSTACK_VMMS_MIGRATIONS_H_

#include <span>

#include "absl/status/statusor.h"
#include "vmms/sqlite_db.h"

namespace vmms {

// One step of the schema. Versions start at 1 and increase by one; a released
// migration is never edited, only followed by a new one.
struct Migration {
  int version;
  const char* description;
  const char* sql;
};

// The schema of vmms.db, in order.
std::span<const Migration> SchemaMigrations();

// Brings `db` to the last version of `migrations`, each step in its own
// transaction together with its schema_version row, so that a crash leaves the
// database at a whole version. Returns the resulting version. A database newer
// than `migrations` is refused rather than guessed at.
absl::StatusOr<int> ApplyMigrations(Database& db,
                                    std::span<const Migration> migrations);

// The highest applied version, 0 for an empty database.
absl::StatusOr<int> SchemaVersion(Database& db);

}  // namespace vmms

#endif  // HVSTACK_VMMS_MIGRATIONS_H_
