#include "vmms/sqlite_db.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace vmms {

absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  std::string message = absl::StrCat(what, ": ", sqlite3_errstr(rc));
  if (db != nullptr && sqlite3_errcode(db) == rc) {
    absl::StrAppend(&message, " (", sqlite3_errmsg(db), ")");
  }
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      return absl::FailedPreconditionError(message);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status Statement::Bind(int index, int64_t value) {
  int rc = sqlite3_bind_int64(stmt_.get(), index, value);
  return rc == SQLITE_OK ? absl::OkStatus() : SqliteError(db_, rc, "bind");
}

absl::Status Statement::Bind(int index, absl::string_view value) {
  int rc = sqlite3_bind_text64(stmt_.get(), index, value.data(), value.size(),
                               SQLITE_TRANSIENT, SQLITE_UTF8);
  return rc == SQLITE_OK ? absl::OkStatus() : SqliteError(db_, rc, "bind");
}

absl::Status Statement::BindBlob(int index, absl::string_view bytes) {
  int rc = sqlite3_bind_blob64(stmt_.get(), index, bytes.data(), bytes.size(),
                               SQLITE_TRANSIENT);
  return rc == SQLITE_OK ? absl::OkStatus() : SqliteError(db_, rc, "bind");
}

absl::Status Statement::BindNull(int index) {
  int rc = sqlite3_bind_null(stmt_.get(), index);
  return rc == SQLITE_OK ? absl::OkStatus() : SqliteError(db_, rc, "bind");
}

absl::StatusOr<bool> Statement::Step() {
  int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(db_, rc,
                     absl::StrCat("step '", sqlite3_sql(stmt_.get()), "'"));
}

absl::Status Statement::Run() {
  absl::StatusOr<bool> row = Step();
  if (!row.ok()) return row.status();
  return absl::OkStatus();
}

int64_t Statement::ColumnInt64(int index) const {
  return sqlite3_column_int64(stmt_.get(), index);
}

std::string Statement::ColumnText(int index) const {
  const unsigned char* text = sqlite3_column_text(stmt_.get(), index);
  if (text == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(text),
                     sqlite3_column_bytes(stmt_.get(), index));
}

std::string Statement::ColumnBlob(int index) const {
  const void* bytes = sqlite3_column_blob(stmt_.get(), index);
  if (bytes == nullptr) return "";
  return std::string(static_cast<const char*>(bytes),
                     sqlite3_column_bytes(stmt_.get(), index));
}

bool Statement::ColumnIsNull(int index) const {
  return sqlite3_column_type(stmt_.get(), index) == SQLITE_NULL;
}

absl::StatusOr<Database> Database::Open(const std::string& path) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &raw,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
      nullptr);
  // sqlite3_open_v2 allocates a handle even on failure; it must be closed
  // either way.
  Database db(raw);
  if (rc != SQLITE_OK)
    return SqliteError(raw, rc, absl::StrCat("open database ", path));
  sqlite3_extended_result_codes(raw, 1);
  rc = sqlite3_busy_timeout(raw, 5000);
  if (rc != SQLITE_OK) return SqliteError(raw, rc, "set busy timeout");
  // journal_mode returns a row naming the mode actually in effect; check it
  // really is WAL.
  absl::StatusOr<Statement> wal = db.Prepare("PRAGMA journal_mode=WAL");
  if (!wal.ok()) return wal.status();
  absl::StatusOr<bool> row = wal->Step();
  if (!row.ok()) return row.status();
  if (!*row || wal->ColumnText(0) != "wal") {
    return absl::InternalError(
        absl::StrCat("database ", path, ": cannot enable WAL journal"));
  }
  if (absl::Status s =
          db.Exec("PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;");
      !s.ok()) {
    return s;
  }
  return db;
}

absl::Status Database::Exec(const std::string& sql) {
  char* error = nullptr;
  int rc = sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &error);
  if (rc == SQLITE_OK) return absl::OkStatus();
  std::string detail = error != nullptr ? error : "";
  sqlite3_free(error);
  return SqliteError(nullptr, rc, absl::StrCat("exec '", sql, "': ", detail));
}

absl::StatusOr<Statement> Database::Prepare(absl::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_.get(), sql.data(),
                              static_cast<int>(sql.size()), &stmt, nullptr);
  Statement statement(db_.get(), stmt);
  if (rc != SQLITE_OK) {
    return SqliteError(db_.get(), rc, absl::StrCat("prepare '", sql, "'"));
  }
  return statement;
}

int64_t Database::Changes() const { return sqlite3_changes64(db_.get()); }

absl::StatusOr<Transaction> Transaction::Begin(Database& db) {
  if (absl::Status s = db.Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  return Transaction(&db);
}

Transaction::~Transaction() {
  if (db_ != nullptr) (void)db_->Exec("ROLLBACK");
}

absl::Status Transaction::Commit() {
  Database* db = std::exchange(db_, nullptr);
  if (db == nullptr)
    return absl::FailedPreconditionError("transaction already finished");
  absl::Status s = db->Exec("COMMIT");
  if (!s.ok()) (void)db->Exec("ROLLBACK");
  return s;
}

}  // namespace vmms
