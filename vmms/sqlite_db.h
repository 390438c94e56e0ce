#ifndef HVSTACK_VMMS_SQLITE_DB_H_
#define HVSTACK_VMMS_SQLITE_DB_H_

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vmms {

// A small RAII layer over the SQLite C API: one owner per handle, errors as
// absl::Status. Neither class is thread-safe; VmStore serialises access with
// its own mutex.

// One prepared statement. Finalised on destruction.
class Statement {
 public:
  Statement() = default;
  Statement(Statement&&) noexcept = default;
  Statement& operator=(Statement&&) noexcept = default;

  // Parameters are 1-based, as in SQLite.
  absl::Status Bind(int index, int64_t value);
  absl::Status Bind(int index, absl::string_view value);
  absl::Status BindNull(int index);
  // Bytes that are not text (a serialized protobuf message).
  absl::Status BindBlob(int index, absl::string_view bytes);
  // Binds several values to parameters 1..N in order.
  template <typename... Args>
  absl::Status BindAll(const Args&... args) {
    int index = 0;
    absl::Status status;
    ((status.ok() ? status.Update(BindOne(++index, args)) : void()), ...);
    return status;
  }

  // Returns true when a row is available, false when the statement is done.
  absl::StatusOr<bool> Step();
  // Runs a statement that returns no rows.
  absl::Status Run();

  int64_t ColumnInt64(int index) const;
  std::string ColumnText(int index) const;
  std::string ColumnBlob(int index) const;
  bool ColumnIsNull(int index) const;

 private:
  friend class Database;
  struct Finalizer {
    void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
  };
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}

  absl::Status BindOne(int index, int64_t value) { return Bind(index, value); }
  absl::Status BindOne(int index, int value) {
    return Bind(index, int64_t{value});
  }
  absl::Status BindOne(int index, uint32_t value) {
    return Bind(index, int64_t{value});
  }
  absl::Status BindOne(int index, uint64_t value) {
    return Bind(index, static_cast<int64_t>(value));
  }
  absl::Status BindOne(int index, absl::string_view value) {
    return Bind(index, value);
  }
  absl::Status BindOne(int index, const std::string& value) {
    return Bind(index, absl::string_view(value));
  }
  absl::Status BindOne(int index, const char* value) {
    return Bind(index, absl::string_view(value));
  }

  sqlite3* db_ = nullptr;
  std::unique_ptr<sqlite3_stmt, Finalizer> stmt_;
};

// One database connection. Closed on destruction.
class Database {
 public:
  // Opens (creating if needed) the database at `path` and configures the
  // connection: WAL journal, foreign keys enforced, a busy timeout so that a
  // concurrent reader (sqlite3 CLI) does not fail us immediately.
  static absl::StatusOr<Database> Open(const std::string& path);

  Database(Database&&) noexcept = default;
  Database& operator=(Database&&) noexcept = default;

  // Runs one or more statements that return no rows.
  absl::Status Exec(const std::string& sql);
  absl::StatusOr<Statement> Prepare(absl::string_view sql);
  // Rows changed by the last INSERT/UPDATE/DELETE.
  int64_t Changes() const;

  sqlite3* raw() const { return db_.get(); }

 private:
  struct Closer {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  explicit Database(sqlite3* db) : db_(db) {}

  std::unique_ptr<sqlite3, Closer> db_;
};

// A write transaction (BEGIN IMMEDIATE, so that the write lock is taken up
// front rather than on the first write, which avoids SQLITE_BUSY deadlocks
// between two writers). Rolled back on destruction unless committed.
class Transaction {
 public:
  static absl::StatusOr<Transaction> Begin(Database& db);
  Transaction(Transaction&& other) noexcept
      : db_(std::exchange(other.db_, nullptr)) {}
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();

  absl::Status Commit();

 private:
  explicit Transaction(Database* db) : db_(db) {}
  Database* db_;  // Null once committed or rolled back.
};

// Maps a SQLite result code to a Status; `what` says which operation failed.
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what);

}  // namespace vmms

#endif  // HVSTACK_VMMS_SQLITE_DB_H_
