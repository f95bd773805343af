// A thin RAII layer over the SQLite C API: handles that close themselves and
// result codes turned into ffnjit Errors. Internal to the cache library.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "support/status.hpp"

namespace ffnjit::cache::sql {

// Maps a SQLite result code to an Error whose message names `path` and the fix.
// `what` says what was being done ("reading", "writing a binary record").
Error error_from(sqlite3* db, int rc, const std::string& path, const std::string& what);

class Stmt {
 public:
  Stmt() = default;
  Stmt(sqlite3_stmt* s, sqlite3* db, const std::string* path) : s_(s), db_(db), path_(path) {}
  Stmt(Stmt&& o) noexcept { *this = std::move(o); }
  Stmt& operator=(Stmt&& o) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  // Bind parameters (1-based). A failed bind is remembered and reported by step().
  Stmt& bind(int i, std::string_view text);
  Stmt& bind_blob(int i, std::string_view bytes);
  Stmt& bind(int i, int64_t v);
  Stmt& bind(int i, double v);
  Stmt& bind_null(int i);
  // Binds column `col` of the current row of `src` (another statement, possibly on
  // another database) with its exact type and bytes.
  Stmt& bind_copy(int i, const Stmt& src, int col);

  // Runs one step: true when a row is ready, false when the statement is done.
  Expected<bool> step();
  // Steps to completion, for statements that return no rows.
  Status run();
  // Steps through every row, calling on_row() while it is current (void, or returning
  // a Status: an error ends the walk with it); a failed step ends it too.
  template <class F>
  Status each_row(F on_row);
  void reset();

  bool is_null(int col) const;
  std::string text(int col) const;
  std::string blob(int col) const;  // bytes exactly as stored (TEXT or BLOB)
  size_t bytes(int col) const { return size_t(sqlite3_column_bytes(s_, col)); }
  int64_t i64(int col) const;
  double f64(int col) const;

 private:
  sqlite3_stmt* s_ = nullptr;
  sqlite3* db_ = nullptr;
  const std::string* path_ = nullptr;
  int bind_rc_ = SQLITE_OK;
};

template <class F>
Status Stmt::each_row(F on_row) {
  for (;;) {
    auto row = step();
    if (!row) return row.error();
    if (!*row) return {};
    if constexpr (std::is_void_v<decltype(on_row())>)
      on_row();
    else
      FFNJIT_TRY(on_row());
  }
}

class Db {
 public:
  Db() = default;
  Db(Db&& o) noexcept { *this = std::move(o); }
  Db& operator=(Db&& o) noexcept;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db();

  // sqlite3_open_v2 with `flags`; `uri` is what SQLite opens (a path or a file: URI),
  // `path` the file name used in messages.
  static Expected<Db> open(const std::string& uri, const std::string& path, int flags);

  Expected<Stmt> prepare(std::string_view sql);
  // Runs one or more statements that return no rows.
  Status exec(const std::string& sql);
  // The first column of the first row of `sql` as an integer (for PRAGMAs).
  Expected<int64_t> query_int(const std::string& sql);

  sqlite3* handle() const { return db_; }
  const std::string& path() const { return *path_; }
  Error error(int rc, const std::string& what) const { return error_from(db_, rc, *path_, what); }

 private:
  sqlite3* db_ = nullptr;
  // Heap-allocated so statements can keep a stable pointer across moves of the Db.
  std::string* path_ = nullptr;
};

// A write transaction (BEGIN IMMEDIATE): takes the write lock up front so two
// writers never deadlock upgrading read locks; rolls back unless committed.
class WriteTxn {
 public:
  static Expected<WriteTxn> begin(Db& db);
  WriteTxn(WriteTxn&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  WriteTxn& operator=(WriteTxn&&) = delete;
  ~WriteTxn();
  Status commit();

 private:
  explicit WriteTxn(Db* db) : db_(db) {}
  Db* db_ = nullptr;
};

}  // namespace ffnjit::cache::sql
