// Opening the cache: deciding whose file it is before SQLite may touch it, creating a
// new cache atomically, choosing a connection that cannot modify what it only reads,
// and the schema migrations (docs/cache.md, "Files ffnjit does not recognize").
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <thread>

#include "cache/cache.hpp"
#include "cache/impl.hpp"
#include "cache/location.hpp"
#include "cache/sqlite_header.hpp"
#include "support/hash.hpp"
#include "support/strings.hpp"

namespace ffnjit::cache {

// ---------------------------------------------------------------------------
// Schema. Migration i turns schema version i into i + 1 inside one BEGIN IMMEDIATE
// transaction; to add v3, append a function and bump kSchemaVersion.

namespace {

Status migrate_v0_to_v1(sql::Db& db) {
  // JSON columns hold compact JSON text so the sqlite3 shell and json_extract() read them.
  return db.exec(R"sql(
    CREATE TABLE binaries (
      key               TEXT PRIMARY KEY NOT NULL,  -- SHA-256 of what determines the bytes
      kernel_name       TEXT NOT NULL,
      lowered_name      TEXT NOT NULL,
      arch              TEXT NOT NULL,              -- sm_90a
      generator_version TEXT NOT NULL,
      nvrtc_version     TEXT NOT NULL,
      spec              TEXT NOT NULL,              -- KernelSpec::canonical()
      resources         TEXT NOT NULL,              -- JSON object
      options           TEXT NOT NULL,              -- JSON array of NVRTC options
      compile_ms        REAL NOT NULL,
      created_at        INTEGER NOT NULL,           -- Unix milliseconds
      -- Large columns last: listing the small ones then never reads their pages.
      source            TEXT NOT NULL,
      ptx               TEXT NOT NULL,              -- '' when not kept
      cubin             BLOB NOT NULL CHECK (length(cubin) > 0)
    );
    CREATE INDEX binaries_by_name ON binaries (kernel_name);
    CREATE TABLE tuning (
      key               TEXT PRIMARY KEY NOT NULL,  -- SHA-256 of the unique columns below
      gpu_name          TEXT NOT NULL,
      arch              TEXT NOT NULL,
      driver_version    TEXT NOT NULL,
      nvrtc_version     TEXT NOT NULL,
      generator_version TEXT NOT NULL,
      ffnjit_version    TEXT NOT NULL,
      layer_signature   TEXT NOT NULL,
      bucket_min        INTEGER NOT NULL CHECK (bucket_min >= 1),
      bucket_max        INTEGER NOT NULL CHECK (bucket_max >= bucket_min),
      winner            TEXT NOT NULL,              -- JSON object
      dense_us          REAL,                       -- NULL when untimed
      winner_us         REAL,
      untimed           INTEGER NOT NULL,
      created_at        INTEGER NOT NULL,
      candidates        TEXT NOT NULL,              -- JSON array (large: last)
      UNIQUE (gpu_name, arch, driver_version, nvrtc_version, generator_version, layer_signature,
              bucket_min, bucket_max)
    );
    CREATE INDEX tuning_by_layer ON tuning (layer_signature, bucket_min);
  )sql");
}

Status migrate_v1_to_v2(sql::Db& db) {
  // v2 stores what a binary's key is derived from (the templates hash; the rest was
  // there) and its cubin's digest, so keys are re-derived and cubins checked before
  // anything is served or imported. v1 binaries cannot be re-keyed without the
  // templates hash: they are dropped (the runtime compiles on a miss, `ffnjit tune
  // --compile-only` into a fresh cache stores them again); tuning records are kept.
  return db.exec(R"sql(
    ALTER TABLE binaries ADD COLUMN templates_hash TEXT NOT NULL DEFAULT '';
    ALTER TABLE binaries ADD COLUMN cubin_sha256 TEXT NOT NULL DEFAULT '';
    DELETE FROM binaries;
  )sql");
}

using Migration = Status (*)(sql::Db&);
const Migration kMigrations[] = {migrate_v0_to_v1, migrate_v1_to_v2};
static_assert(std::size(kMigrations) == kSchemaVersion, "one migration per schema version");

const char* const kTables[] = {"binaries", "tuning"};

const char* const kUntouched = "; ffnjit leaves it untouched: ";

// What the file says about itself through SQLite.
struct SqlState {
  uint32_t app_id = 0;
  int64_t version = 0;
  std::vector<std::string> tables;  // user tables and views
  bool fresh() const { return app_id == 0 && version == 0 && tables.empty(); }
};

Expected<SqlState> inspect_sql(sql::Db& db) {
  SqlState s;
  auto app = db.query_int("PRAGMA application_id");
  if (!app) return app.error();
  s.app_id = uint32_t(*app);
  auto ver = db.query_int("PRAGMA user_version");
  if (!ver) return ver.error();
  s.version = *ver;
  auto st = db.prepare(
      "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' "
      "ORDER BY name");
  if (!st) return st.error();
  FFNJIT_TRY(st->each_row([&] { s.tables.push_back(st->text(0)); }));
  return s;
}

// Reports failures as "while reading its header" rather than naming our SQL. The
// reads share one snapshot (a read transaction unless the caller holds one): another
// process initializing the file between them would otherwise show its tables without
// its application_id.
Expected<SqlState> inspect(sql::Db& db) {
  const bool own_snapshot = sqlite3_get_autocommit(db.handle()) != 0;
  if (own_snapshot) FFNJIT_TRY(db.exec("BEGIN"));
  auto s = inspect_sql(db);
  if (!s)
    s = sql::error_from(db.handle(), sqlite3_extended_errcode(db.handle()), db.path(),
                        "reading its header");
  if (own_snapshot) sqlite3_exec(db.handle(), "COMMIT", nullptr, nullptr, nullptr);  // only read
  return s;
}

std::string hex32(uint32_t v) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08x", v);
  return hex;
}

Status newer(const std::string& path, int64_t version) {
  return unsupported(path + " was created by a newer ffnjit (schema v" + std::to_string(version) +
                     ", this build reads up to v" + std::to_string(kSchemaVersion) +
                     "); upgrade ffnjit or use another --cache");
}

Status foreign_app(const std::string& path, uint32_t app_id) {
  return user_error(path + " belongs to another application (SQLite application_id " +
                    hex32(app_id) + "), it is not an ffnjit cache" + kUntouched +
                    "pass --cache with another path");
}

// Is this file ours (or empty and ours to initialize)? Never changes the file.
Status classify(const std::string& path, const SqlState& s) {
  if (s.app_id == kApplicationId) {
    if (s.version > kSchemaVersion) return newer(path, s.version);
    if (s.version < 1)
      return io_error(path +
                      " is marked as an ffnjit cache but has no schema version; it is damaged" +
                      kUntouched + "move it away or pass another --cache");
    for (const char* t : kTables) {
      bool found = false;
      for (const auto& have : s.tables) found = found || have == t;
      if (!found)
        return io_error(path + " is an ffnjit cache without its '" + t + "' table; it is damaged" +
                        kUntouched + "move it away or pass another --cache");
    }
    return {};
  }
  if (s.app_id != 0) return foreign_app(path, s.app_id);
  if (!s.fresh())
    return user_error(path + " is a SQLite database but not an ffnjit cache (it has tables " +
                      join(s.tables, ", ") + ")" + kUntouched + "pass --cache with another path");
  return {};
}

std::string dir_of(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string uri_escape(const std::string& path) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '/' || c == '.' || c == '_' || c == '-' || c == '~') {
      out += char(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Status set_wal(sql::Db& db, int timeout_ms) {
  // Switching the journal mode needs the file to itself for a moment and does not
  // always go through the busy handler, so retry here.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto st = db.prepare("PRAGMA journal_mode=WAL");
    if (!st) return st.error();
    auto row = st->step();
    if (row && *row && st->text(0) == "wal") return {};
    if (std::chrono::steady_clock::now() > deadline) {
      if (!row) return row.error();
      return io_error("could not switch " + db.path() + " to WAL mode (it stayed in '" +
                      (*row ? st->text(0) : std::string("?")) +
                      "' mode); is it on a network file system? pass --cache with a local path");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

Status run_migrations(sql::Db& db, int64_t from) {
  for (int64_t v = from; v < kSchemaVersion; ++v) FFNJIT_TRY(kMigrations[v](db));
  return db.exec("PRAGMA application_id = " + std::to_string(int32_t(kApplicationId)) +
                 "; PRAGMA user_version = " + std::to_string(kSchemaVersion));
}

Status migrate(sql::Db& db, const std::string& path) {
  auto txn = sql::WriteTxn::begin(db);
  if (!txn) return txn.error();
  // Another process may have created or migrated the file since we looked.
  auto s = inspect(db);
  if (!s) return s.error();
  if (!s->fresh()) {
    FFNJIT_TRY(classify(path, *s));
    if (s->version >= kSchemaVersion) return txn->commit();
  }
  FFNJIT_TRY(run_migrations(db, s->version));
  return txn->commit();
}

// The bytes of a new, empty cache of the current schema (rollback-journal mode; the
// first writer switches it to WAL): built in memory, so that a cache file appears on
// disk only complete, application_id included.
Expected<std::string> initial_image() {
  auto db = sql::Db::open(":memory:", "(new cache)", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (!db) return db.error();
  FFNJIT_TRY(db->exec("PRAGMA auto_vacuum = INCREMENTAL"));
  FFNJIT_TRY(db->exec("BEGIN"));
  FFNJIT_TRY(run_migrations(*db, 0));
  FFNJIT_TRY(db->exec("COMMIT"));
  sqlite3_int64 n = 0;
  unsigned char* bytes = sqlite3_serialize(db->handle(), "main", &n, 0);
  if (!bytes) return internal_error("could not serialize a new cache (SQLite out of memory)");
  std::string out(reinterpret_cast<const char*>(bytes), size_t(n));
  sqlite3_free(bytes);
  return out;
}

Status write_all(int fd, const std::string& bytes) {
  for (size_t done = 0; done < bytes.size();) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return io_error(std::string("cannot write a new cache: ") + std::strerror(errno));
    done += size_t(n);
  }
  return ::fsync(fd) == 0
             ? Status()
             : io_error(std::string("cannot sync a new cache: ") + std::strerror(errno));
}

// Creates `path` as a new, empty cache in one step: the image is written to an
// unnamed file (O_TMPFILE) or a private temporary name and then hard-linked into
// place, which fails rather than replace anything (or follow a symlink) already
// there. Another process creating it at the same time is fine: one link wins.
Status create_cache_file(const std::string& path) {
  static const Expected<std::string> image = initial_image();  // the same bytes every time
  if (!image) return image.error();
  const std::string dir = dir_of(path);
  const std::string fail = "cannot create " + path + ": ";
  const std::string fix = "; pass --cache PATH or set FFNJIT_CACHE to a writable location";
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
  if (fd >= 0) {
    Status s = write_all(fd, *image);
    const std::string proc = "/proc/self/fd/" + std::to_string(fd);
    int rc = s ? ::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) : -1;
    int err = errno;
    ::close(fd);
    if (!s) return s;
    if (rc == 0 || err == EEXIST) return {};
    if (err != ENOENT) return io_error(fail + std::strerror(err) + fix);
    // No /proc: fall through to a named temporary file.
  }
  std::string tmp = path + ".init-XXXXXX";
  fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return io_error(fail + std::strerror(errno) + fix);
  const mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(fd, 0644 & ~mask);
  Status s = write_all(fd, *image);
  ::close(fd);
  int rc = s ? ::link(tmp.c_str(), path.c_str()) : -1;
  int err = errno;
  ::unlink(tmp.c_str());
  if (!s) return s;
  if (rc == 0 || err == EEXIST) return {};
  return io_error(fail + std::strerror(err) + fix);
}

// Rejects, from the file's bytes alone, whatever is not ours: SQLite never sees it.
Status check_bytes(const std::string& path, const FileState& f) {
  if (!f.header) {
    if (f.size >= 16) {
      char magic[16] = {0};
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
      ssize_t n = fd >= 0 ? ::pread(fd, magic, 16, 0) : -1;
      if (fd >= 0) ::close(fd);
      if (n == 16 && std::memcmp(magic, "SQLite format 3", 16) == 0)
        return io_error(path + " is truncated (" + std::to_string(f.size) +
                        " bytes, shorter than a SQLite header)" + kUntouched +
                        "move it away or pass another --cache");
    }
    return user_error(path + " is not an ffnjit cache (not a SQLite database)" + kUntouched +
                      "pass --cache with another path, or move the file away");
  }
  const SqliteHeader& h = *f.header;
  if (h.application_id == kApplicationId) {
    if (h.user_version > uint32_t(kSchemaVersion)) return newer(path, h.user_version);
    return {};
  }
  if (h.application_id != 0) return foreign_app(path, h.application_id);
  // No application_id: only an empty database (no tables) may become a cache, and
  // pending changes of another program in a -wal or -journal mean it is in use.
  if (f.has_wal || f.has_journal)
    return user_error(path +
                      " is a SQLite database without ffnjit's application_id and with a pending " +
                      (f.has_wal ? path + "-wal" : path + "-journal") +
                      " of the program that uses it, not an ffnjit cache" + kUntouched +
                      "pass --cache with another path");
  return {};
}

// Opens `path` read-only in a way that cannot modify it or create anything beside it:
// immutable (no locks, no journal, no WAL) when there are no pending changes.
Expected<sql::Db> open_immutable(const std::string& path) {
  return open_db(path, SQLITE_OPEN_READONLY, "mode=ro&immutable=1");
}

bool writable_dir(const std::string& dir) {
  return ::access(dir.c_str(), W_OK | X_OK) == 0;
}

// This process may write `path` itself: owned by us, user-writable mode bits (a 0444
// file is read-only even for root), and the OS agrees, as for its directory.
bool writable_by_us(const std::string& path, const struct stat& st) {
  return st.st_uid == ::geteuid() && (st.st_mode & S_IWUSR) && ::access(path.c_str(), W_OK) == 0 &&
         writable_dir(dir_of(path));
}

// A side file SQLite would open for writing must be ours to write.
Status check_side_files(const std::string& path) {
  for (const char* suffix : {"-wal", "-shm", "-journal"}) {
    const std::string side = path + suffix;
    struct stat st;
    if (::lstat(side.c_str(), &st) != 0) continue;
    if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid() ||
        ::access(side.c_str(), R_OK | W_OK) != 0)
      return io_error(
          side + " (SQLite's " + (suffix + 1) +
          " file for the cache) is not a regular file this user can write; ffnjit will not "
          "write the cache through it: if no process uses the cache, remove it (after "
          "checking who made it), or pass --cache PATH");
  }
  return {};
}

}  // namespace

Expected<sql::Db> open_db(const std::string& path, int flags, const std::string& params) {
  std::string uri = "file:" + uri_escape(path);
  if (!params.empty()) uri += "?" + params;
  return sql::Db::open(uri, path, flags | SQLITE_OPEN_URI | SQLITE_OPEN_NOFOLLOW);
}

Expected<Cache> Cache::open(const std::string& path, const OpenOptions& o) {
  const std::string fix = "; pass --cache PATH or set FFNJIT_CACHE to a writable location";
  const bool read_only = o.read_only || o.untrusted;
  if (path.empty())
    return user_error("the cache path is empty; pass --cache PATH or set FFNJIT_CACHE");
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode) && ::stat(path.c_str(), &st) != 0 &&
      errno == ENOENT) {
    // Never create (or look for) a file through a symlink to nothing.
    if (!o.untrusted) FFNJIT_TRY(check_location(path));
    return not_found(path + " is a symlink to a file that does not exist; pass the real path");
  }
  bool exists = ::stat(path.c_str(), &st) == 0;
  if (!exists && errno != ENOENT)
    return io_error("cannot access " + path + ": " + std::strerror(errno) +
                    "; pass --cache PATH or set FFNJIT_CACHE");
  if (exists && S_ISDIR(st.st_mode))
    return user_error(path + " is a directory; pass --cache with a file path such as " + path +
                      "/cache.db");
  if (exists && !S_ISREG(st.st_mode))
    return user_error(path + " is not a regular file; pass --cache with a file path");

  // SQLite gets the resolved path: its side files then sit where the checks looked.
  std::string real = path;
  if (exists) {
    if (char* r = ::realpath(path.c_str(), nullptr)) {
      real = r;
      std::free(r);
    }
  }
  const std::string dir = dir_of(real);
  if (!exists) {
    if (read_only || !o.create_if_missing)
      return not_found(
          "no ffnjit cache at " + path +
          "; run `ffnjit tune` to create one, or pass --cache PATH or set FFNJIT_CACHE");
    FFNJIT_TRY(ensure_cache_dir(path));
    if (!writable_dir(dir))
      return io_error("cannot create " + path + ": the directory " + dir + " is not writable" +
                      fix);
    FFNJIT_TRY(create_cache_file(path));
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
      return io_error("cannot open " + path + " just created: " + std::strerror(errno) + fix);
  }
  if (!o.untrusted) FFNJIT_TRY(check_location(path));

  // Whose file is it? Decided from its bytes (and its -wal's newest page 1).
  auto file = read_file_state(real);
  if (!file) return file.error();
  bool empty = file->size == 0;
  if (empty && file->has_wal)
    return user_error(path + " is empty but " + path +
                      "-wal holds changes of a SQLite database, not of an ffnjit cache" +
                      kUntouched + "pass --cache with another path");
  if (!empty) FFNJIT_TRY(check_bytes(path, *file));
  if (!empty && file->header->application_id != kApplicationId) {
    // No application_id and nothing pending: read its tables through a connection
    // that cannot write; only a database without any may become a cache.
    auto probe = open_immutable(real);
    if (!probe) return probe.error();
    auto s = inspect(*probe);
    if (!s) return s.error();
    FFNJIT_TRY(classify(path, *s));
    empty = true;  // fresh: no tables, no version
  }
  if (empty && read_only)
    return not_found(path +
                     " is an empty file, not yet an ffnjit cache; run `ffnjit tune` to fill it");

  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->read_only = read_only;
  const bool ours_to_write = writable_by_us(real, st);
  Expected<sql::Db> db = Error{};
  if (!read_only) {
    if (!(st.st_mode & S_IWUSR) || ::access(real.c_str(), W_OK) != 0)
      return io_error(path + " is read-only; make it writable (`chmod u+w " + path + "`)" + fix +
                      " (reading commands such as `ffnjit cache ls` work on it as is)");
    // WAL mode keeps PATH-wal and PATH-shm beside the database.
    if (!writable_dir(dir))
      return io_error(
          "the directory " + dir + " holding " + path +
          " is not writable (SQLite keeps its -wal and -shm files there); make it writable" + fix);
    FFNJIT_TRY(check_side_files(real));
    db = open_db(real, SQLITE_OPEN_READWRITE);
  } else if (ours_to_write && !o.untrusted) {
    // Our own cache, which we could write: a read-write connection in query_only mode
    // takes part in locking and WAL recovery like any writer, cannot change a record,
    // and as the last connection removes the side files it made.
    FFNJIT_TRY(check_side_files(real));
    db = open_db(real, SQLITE_OPEN_READWRITE);
    if (db) FFNJIT_TRY(db->exec("PRAGMA query_only = 1"));
  } else if (!file->has_wal && !file->has_journal) {
    // Nothing pending: the main file is the whole database. Immutable reading needs
    // no -shm and creates nothing (0444 files, read-only media, untrusted files).
    db = open_immutable(real);
  } else if (file->has_wal && file->has_shm && !file->has_journal) {
    // A writer's committed changes wait in -wal: read them through the existing -shm.
    db = open_db(real, SQLITE_OPEN_READONLY, "mode=ro");
  } else {
    return io_error(
        path + " has changes in its " +
        (file->has_journal ? "-journal" : "-wal (without its -shm)") +
        " that only a process that may write it can recover; ffnjit leaves it untouched: open it "
        "once with write access (e.g. `ffnjit cache verify` as its owner), or pass another "
        "--cache");
  }
  if (!db) return db.error();
  sqlite3_busy_timeout(db->handle(), o.busy_timeout_ms);

  if (!read_only && empty) {
    // An empty file becomes a cache in rollback-journal mode first, so its main file
    // has ffnjit's application_id before any -wal exists (what check_bytes relies on).
    FFNJIT_TRY(db->exec("PRAGMA auto_vacuum = INCREMENTAL"));
    FFNJIT_TRY(migrate(*db, path));
    // An empty database already in WAL mode committed that into its -wal: move it to
    // the main file now (a busy checkpoint only means another process will).
    sqlite3_wal_checkpoint_v2(db->handle(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  }
  auto state = inspect(*db);
  if (!state) return state.error();
  FFNJIT_TRY(classify(path, *state));
  if (state->fresh()) return internal_error(path + " is still empty after initializing it");
  if (read_only) {
    if (state->version < kSchemaVersion)
      return unsupported(
          path + " uses schema v" + std::to_string(state->version) +
          " of an older ffnjit; open it once for writing to upgrade it (`ffnjit cache gc --cache " +
          path + "`), then export it again");
    impl->version = int(state->version);
  } else {
    FFNJIT_TRY(set_wal(*db, o.busy_timeout_ms));
    // NORMAL in WAL mode: a crash of the process never loses a committed transaction;
    // a power loss may lose the last ones but never corrupts the file.
    FFNJIT_TRY(db->exec("PRAGMA synchronous = NORMAL"));
    if (state->version < kSchemaVersion) FFNJIT_TRY(migrate(*db, path));
    impl->version = kSchemaVersion;
  }
  impl->db = std::move(*db);
  return Cache(std::move(impl));
}

}  // namespace ffnjit::cache
