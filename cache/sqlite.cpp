// A thin RAII layer over the SQLite C API: handles that close themselves and
// result codes turned into ffnjit Errors.
#include "cache/sqlite.hpp"

#include <utility>

namespace ffnjit::cache::sql {

Error error_from(sqlite3* db, int rc, const std::string& path, const std::string& what) {
  std::string detail = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string where = " while " + what;
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return io_error("the cache " + path +
                      " stayed locked by another process past the busy timeout" + where +
                      "; retry, or find the process holding it (`fuser " + path + "`)");
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return io_error(path + " is damaged or truncated (SQLite: " + detail + ")" + where +
                      "; ffnjit leaves it untouched: move it away or pass another --cache");
    case SQLITE_READONLY:
      return io_error(path + " is read-only (SQLite: " + detail + ")" + where +
                      "; make it writable, or pass --cache PATH or set FFNJIT_CACHE to a writable "
                      "location");
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
      return io_error(
          "cannot open " + path + " (SQLite: " + detail + ")" + where +
          "; check the path and its permissions, or pass --cache PATH or set FFNJIT_CACHE");
    case SQLITE_FULL:
      return io_error("the disk holding " + path + " is full" + where +
                      "; free space or pass another --cache");
    case SQLITE_IOERR:
      return io_error("I/O error on " + path + " (SQLite: " + detail + ")" + where +
                      "; check the disk, or pass another --cache");
    default:
      return io_error("SQLite error on " + path + ": " + detail + where);
  }
}

Stmt& Stmt::operator=(Stmt&& o) noexcept {
  if (this != &o) {
    if (s_) sqlite3_finalize(s_);
    s_ = std::exchange(o.s_, nullptr);
    db_ = o.db_;
    path_ = o.path_;
    bind_rc_ = o.bind_rc_;
  }
  return *this;
}

Stmt::~Stmt() {
  if (s_) sqlite3_finalize(s_);
}

namespace {
// SQLite takes lengths as int; records bigger than 2 GiB are refused, not truncated.
int checked_len(std::string_view v, int* rc) {
  if (v.size() > size_t(0x7fffffff)) {
    *rc = SQLITE_TOOBIG;
    return 0;
  }
  return int(v.size());
}
}  // namespace

Stmt& Stmt::bind(int i, std::string_view text) {
  int rc = SQLITE_OK, n = checked_len(text, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_bind_text(s_, i, text.data(), n, SQLITE_TRANSIENT);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Stmt& Stmt::bind_blob(int i, std::string_view bytes) {
  int rc = SQLITE_OK, n = checked_len(bytes, &rc);
  // A zero-length blob must still be a BLOB, not NULL: SQLite needs a non-null pointer.
  if (rc == SQLITE_OK) rc = sqlite3_bind_blob(s_, i, n ? bytes.data() : "", n, SQLITE_TRANSIENT);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Stmt& Stmt::bind(int i, int64_t v) {
  int rc = sqlite3_bind_int64(s_, i, v);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Stmt& Stmt::bind(int i, double v) {
  int rc = sqlite3_bind_double(s_, i, v);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Stmt& Stmt::bind_null(int i) {
  int rc = sqlite3_bind_null(s_, i);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Stmt& Stmt::bind_copy(int i, const Stmt& src, int col) {
  int rc = sqlite3_bind_value(s_, i, sqlite3_column_value(src.s_, col));
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Expected<bool> Stmt::step() {
  if (bind_rc_ != SQLITE_OK) return error_from(nullptr, bind_rc_, *path_, "binding a value");
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return error_from(db_, rc, *path_, std::string("running `") + sqlite3_sql(s_) + "`");
}

Status Stmt::run() {
  for (;;) {
    auto r = step();
    if (!r) return r.error();
    if (!*r) return {};
  }
}

void Stmt::reset() {
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
  bind_rc_ = SQLITE_OK;
}

bool Stmt::is_null(int col) const {
  return sqlite3_column_type(s_, col) == SQLITE_NULL;
}

std::string Stmt::text(int col) const {
  const unsigned char* p = sqlite3_column_text(s_, col);
  int n = sqlite3_column_bytes(s_, col);
  return p ? std::string(reinterpret_cast<const char*>(p), size_t(n)) : std::string();
}

std::string Stmt::blob(int col) const {
  const void* p = sqlite3_column_blob(s_, col);
  int n = sqlite3_column_bytes(s_, col);
  return p ? std::string(static_cast<const char*>(p), size_t(n)) : std::string();
}

int64_t Stmt::i64(int col) const {
  return sqlite3_column_int64(s_, col);
}
double Stmt::f64(int col) const {
  return sqlite3_column_double(s_, col);
}

Db& Db::operator=(Db&& o) noexcept {
  if (this != &o) {
    if (db_) sqlite3_close_v2(db_);
    delete path_;
    db_ = std::exchange(o.db_, nullptr);
    path_ = std::exchange(o.path_, nullptr);
  }
  return *this;
}

Db::~Db() {
  if (db_) sqlite3_close_v2(db_);
  delete path_;
}

Expected<Db> Db::open(const std::string& uri, const std::string& path, int flags) {
  Db d;
  d.path_ = new std::string(path);
  int rc = sqlite3_open_v2(uri.c_str(), &d.db_, flags, nullptr);
  if (rc != SQLITE_OK) return d.error(rc, "opening it");
  sqlite3_extended_result_codes(d.db_, 1);
  return d;
}

Expected<Stmt> Db::prepare(std::string_view sql) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), int(sql.size()), &s, nullptr);
  if (rc != SQLITE_OK) return error(rc, "preparing `" + std::string(sql) + "`");
  return Stmt(s, db_, path_);
}

Status Db::exec(const std::string& sql) {
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return error(rc, "running `" + sql + "`");
  return {};
}

Expected<int64_t> Db::query_int(const std::string& sql) {
  auto st = prepare(sql);
  if (!st) return st.error();
  auto row = st->step();
  if (!row) return row.error();
  return *row ? st->i64(0) : int64_t(0);
}

Expected<WriteTxn> WriteTxn::begin(Db& db) {
  FFNJIT_TRY(db.exec("BEGIN IMMEDIATE"));
  return WriteTxn(&db);
}

WriteTxn::~WriteTxn() {
  // Errors here only mean there was nothing to roll back.
  if (db_) sqlite3_exec(db_->handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

Status WriteTxn::commit() {
  Db* db = std::exchange(db_, nullptr);
  Status s = db->exec("COMMIT");
  if (!s) sqlite3_exec(db->handle(), "ROLLBACK", nullptr, nullptr, nullptr);
  return s;
}

}  // namespace ffnjit::cache::sql
