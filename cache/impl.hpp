// Internals shared by the cache's source files: the open database and row codecs.
#pragma once

#include <string>

#include "cache/cache.hpp"
#include "cache/sqlite.hpp"

namespace ffnjit::cache {

struct Cache::Impl {
  sql::Db db;
  std::string path;
  bool read_only = false;
  int version = 0;
};

// Column lists in the order the row readers below expect.
extern const char* const kBinaryColumns;
extern const char* const kBinaryColumnsNoPayload;
extern const char* const kTuningColumns;

// Decode one row selected with the column lists above. A JSON column that does not
// parse is an Error (the record is damaged), not an exception.
Expected<BinaryRecord> binary_from_row(const sql::Stmt& st);
Expected<TuningRecord> tuning_from_row(const sql::Stmt& st);

// Opens `path` as a SQLite database via a file: URI (so no file name is mistaken
// for a URI), with extra URI parameters such as "mode=ro".
Expected<sql::Db> open_db(const std::string& path, int flags, const std::string& params = "");

}  // namespace ffnjit::cache
