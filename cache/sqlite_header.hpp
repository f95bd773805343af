// What a file says about itself, read with plain read-only file I/O before SQLite ever
// opens it: SQLite's own open can roll back a hot journal, checkpoint a -wal into the
// main file and delete -wal and -shm, so it must only ever see files that are ours.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "support/status.hpp"

namespace ffnjit::cache {

// The fields of the 100-byte SQLite database header that decide whose file it is.
struct SqliteHeader {
  uint32_t application_id = 0;  // offset 68, big-endian (PRAGMA application_id)
  uint32_t user_version = 0;    // offset 60, big-endian (PRAGMA user_version)
  bool wal_mode = false;        // offsets 18-19 are 2 (WAL) rather than 1 (rollback journal)
};

// Parses a database header; nullopt unless `bytes` starts with "SQLite format 3\0" and
// holds all 100 header bytes.
std::optional<SqliteHeader> parse_sqlite_header(std::string_view bytes);

// The first 100 bytes of the newest committed version of page 1 in the WAL file
// `wal_bytes` (the -wal file's content), or nullopt when it holds no committed frame
// for page 1. Frames are validated as SQLite's recovery does: salts equal to the WAL
// header's and the running checksum intact; the first invalid frame ends the log.
std::optional<std::string> wal_page1(std::string_view wal_bytes);

// The state of the database file `path` and its side files, from plain reads.
struct FileState {
  int64_t size = 0;                    // of the main file
  std::optional<SqliteHeader> header;  // the authoritative page-1 header: from the
                                       // newest committed WAL frame if any, else the file
  bool header_from_wal = false;
  bool has_wal = false;      // PATH-wal exists with data (size > 0)
  bool has_journal = false;  // PATH-journal exists with data (a hot or persisted journal)
  bool has_shm = false;      // PATH-shm exists
};

// Reads `path` (a regular file, already checked) and its -wal, -journal and -shm
// without creating, locking or modifying anything. An unreadable main file is an Error.
// A -wal larger than `max_wal_bytes` is not parsed (header stays the main file's).
Expected<FileState> read_file_state(const std::string& path, int64_t max_wal_bytes = int64_t(1)
                                                                                     << 30);

}  // namespace ffnjit::cache
