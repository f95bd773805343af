// The kernel cache: opening (with bad-file detection), schema migrations, and the
// binary and tuning record operations.
#include "cache/cache.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <thread>

#include "cache/impl.hpp"
#include "cache/location.hpp"
#include "support/strings.hpp"

namespace ffnjit::cache {

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// ---------------------------------------------------------------------------
// Schema. Migration i turns schema version i into i + 1 inside one BEGIN IMMEDIATE
// transaction; to add v2, append a function and bump kSchemaVersion.

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

using Migration = Status (*)(sql::Db&);
const Migration kMigrations[] = {migrate_v0_to_v1};
static_assert(std::size(kMigrations) == kSchemaVersion, "one migration per schema version");

const char* const kTables[] = {"binaries", "tuning"};

const char* const kUntouched = "; ffnjit leaves it untouched: ";

// What the file says about itself, read without writing anything.
struct FileState {
  uint32_t app_id = 0;
  int64_t version = 0;
  std::vector<std::string> tables;  // user tables and views
  bool fresh() const { return app_id == 0 && version == 0 && tables.empty(); }
};

Expected<FileState> inspect_sql(sql::Db& db) {
  FileState s;
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
// its application_id, and a cache being created would look like a foreign database.
// On failure *failed_rc (when given) receives SQLite's primary result code.
Expected<FileState> inspect(sql::Db& db, int* failed_rc = nullptr) {
  const bool own_snapshot = sqlite3_get_autocommit(db.handle()) != 0;
  if (own_snapshot) FFNJIT_TRY(db.exec("BEGIN"));
  auto s = inspect_sql(db);
  if (!s) {
    if (failed_rc) *failed_rc = sqlite3_errcode(db.handle());
    s = sql::error_from(db.handle(), sqlite3_extended_errcode(db.handle()), db.path(), "reading its header");
  }
  if (own_snapshot) sqlite3_exec(db.handle(), "COMMIT", nullptr, nullptr, nullptr);  // only read
  return s;
}

// Is this file ours (or empty and ours to initialize)? Never changes the file.
Status classify(const std::string& path, const FileState& s) {
  if (s.app_id == kApplicationId) {
    if (s.version > kSchemaVersion)
      return unsupported(path + " was created by a newer ffnjit (schema v" +
                         std::to_string(s.version) + ", this build reads up to v" +
                         std::to_string(kSchemaVersion) +
                         "); upgrade ffnjit or use another --cache");
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
  if (s.app_id != 0) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08x", s.app_id);
    return user_error(path + " belongs to another application (SQLite application_id " + hex +
                      "), it is not an ffnjit cache" + kUntouched +
                      "pass --cache with another path");
  }
  if (!s.fresh())
    return user_error(path + " is a SQLite database but not an ffnjit cache (it has tables " +
                      join(s.tables, ", ") + ")" + kUntouched + "pass --cache with another path");
  return {};
}

// Rejects files that are not SQLite before SQLite sees them: SQLite would happily
// treat some of them as empty databases.
Status check_header(const std::string& path, off_t size) {
  if (size == 0) return {};  // an empty file is an empty database: safe to initialize
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return io_error("cannot read " + path + ": " + std::strerror(errno) +
                    "; check its permissions, or pass --cache PATH or set FFNJIT_CACHE");
  char buf[16] = {0};
  ssize_t n = ::pread(fd, buf, sizeof buf, 0);
  ::close(fd);
  static const char kMagic[16] = "SQLite format 3";  // with its terminating NUL: 16 bytes
  if (n < 16 || std::memcmp(buf, kMagic, 16) != 0)
    return user_error(path + " is not an ffnjit cache (not a SQLite database)" + kUntouched +
                      "pass --cache with another path, or move the file away");
  if (size < 100)
    return io_error(path + " is truncated (" + std::to_string(size) +
                    " bytes, shorter than a SQLite header)" + kUntouched +
                    "move it away or pass another --cache");
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
  for (int64_t v = s->version; v < kSchemaVersion; ++v) FFNJIT_TRY(kMigrations[v](db));
  FFNJIT_TRY(db.exec("PRAGMA application_id = " + std::to_string(int32_t(kApplicationId)) +
                     "; PRAGMA user_version = " + std::to_string(kSchemaVersion)));
  return txn->commit();
}

}  // namespace

Expected<sql::Db> open_db(const std::string& path, int flags, const std::string& params) {
  std::string uri = "file:" + uri_escape(path);
  if (!params.empty()) uri += "?" + params;
  return sql::Db::open(uri, path, flags | SQLITE_OPEN_URI);
}

// ---------------------------------------------------------------------------

Cache::Cache(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Cache::Cache(Cache&&) noexcept = default;
Cache& Cache::operator=(Cache&&) noexcept = default;
Cache::~Cache() = default;

const std::string& Cache::path() const {
  return impl_->path;
}
bool Cache::read_only() const {
  return impl_->read_only;
}
int Cache::schema_version() const {
  return impl_->version;
}

Expected<Cache> Cache::open(const std::string& path, const OpenOptions& o) {
  const std::string fix = "; pass --cache PATH or set FFNJIT_CACHE to a writable location";
  if (path.empty())
    return user_error("the cache path is empty; pass --cache PATH or set FFNJIT_CACHE");
  struct stat st;
  bool exists = ::stat(path.c_str(), &st) == 0;
  if (!exists && errno != ENOENT)
    return io_error("cannot access " + path + ": " + std::strerror(errno) +
                    "; pass --cache PATH or set FFNJIT_CACHE");
  if (exists && S_ISDIR(st.st_mode))
    return user_error(path + " is a directory; pass --cache with a file path such as " + path +
                      "/cache.db");
  if (exists && !S_ISREG(st.st_mode))
    return user_error(path + " is not a regular file; pass --cache with a file path");

  const std::string dir = dir_of(path);
  if (!exists) {
    if (o.read_only || !o.create_if_missing)
      return not_found(
          "no ffnjit cache at " + path +
          "; run `ffnjit tune` to create one, or pass --cache PATH or set FFNJIT_CACHE");
    FFNJIT_TRY(ensure_cache_dir(path));
    if (::access(dir.c_str(), W_OK | X_OK) != 0)
      return io_error("cannot create " + path + ": the directory " + dir + " is not writable" +
                      fix);
  } else {
    FFNJIT_TRY(check_header(path, st.st_size));
    if (!o.read_only && ::access(path.c_str(), W_OK) != 0)
      return io_error(path + " is read-only; make it writable" + fix +
                      " (reading commands such as `ffnjit cache ls` work on it as is)");
    // WAL mode keeps PATH-wal and PATH-shm beside the database.
    if (!o.read_only && ::access(dir.c_str(), W_OK | X_OK) != 0)
      return io_error("the directory " + dir + " holding " + path +
                      " is not writable (SQLite keeps its -wal and -shm files there); make it "
                      "writable" +
                      fix);
  }

  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->read_only = o.read_only;
  // A SQLITE_OPEN_READONLY connection to a WAL database leaves -wal and -shm files
  // behind. Where we could write and no -wal exists yet, read through a read-write
  // connection in query_only mode instead: it cannot change the database, and as the
  // last connection it removes the side files it made.
  struct stat wal;
  bool quiet_reader = o.read_only && ::stat((path + "-wal").c_str(), &wal) != 0 &&
                      ::access(path.c_str(), W_OK) == 0 && ::access(dir.c_str(), W_OK | X_OK) == 0;
  int flags = o.read_only && !quiet_reader
                  ? SQLITE_OPEN_READONLY
                  : SQLITE_OPEN_READWRITE | (exists ? 0 : SQLITE_OPEN_CREATE);
  auto db = open_db(path, flags, o.read_only && !quiet_reader ? "mode=ro" : "");
  if (!db) return db.error();
  sqlite3_busy_timeout(db->handle(), o.busy_timeout_ms);
  if (quiet_reader) FFNJIT_TRY(db->exec("PRAGMA query_only = 1"));
  if (!o.read_only && sqlite3_db_readonly(db->handle(), "main") == 1)
    return io_error(path + " is read-only; make it writable" + fix);

  int rc = SQLITE_OK;
  auto state = inspect(*db, &rc);
  if (!state && o.read_only && !quiet_reader) {
    // A read-only location cannot hold the -shm file a WAL database needs; read the
    // file as immutable then, which is exact as long as no -wal file holds newer data.
    bool wal_pending = ::stat((path + "-wal").c_str(), &wal) == 0 && wal.st_size > 0;
    if (!wal_pending && (rc == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_READONLY)) {
      auto again = open_db(path, flags, "mode=ro&immutable=1");
      if (!again) return again.error();
      db = std::move(again);
      state = inspect(*db);
    }
  }
  if (!state) return state.error();
  if (!state->fresh()) FFNJIT_TRY(classify(path, *state));

  if (o.read_only) {
    if (state->fresh())
      return not_found(path +
                       " is an empty file, not yet an ffnjit cache; run `ffnjit tune` to fill it");
    if (state->version < kSchemaVersion)
      return unsupported(path + " uses schema v" + std::to_string(state->version) +
                         " of an older ffnjit; open it once for writing to upgrade it, or "
                         "`ffnjit cache import` it into another cache");
    impl->version = int(state->version);
  } else {
    // auto_vacuum only takes effect before the first page is written.
    if (state->fresh()) FFNJIT_TRY(db->exec("PRAGMA auto_vacuum = INCREMENTAL"));
    FFNJIT_TRY(set_wal(*db, o.busy_timeout_ms));
    // NORMAL in WAL mode: a crash of the process never loses a committed transaction;
    // a power loss may lose the last ones but never corrupts the file.
    FFNJIT_TRY(db->exec("PRAGMA synchronous = NORMAL"));
    if (state->fresh() || state->version < kSchemaVersion) FFNJIT_TRY(migrate(*db, path));
    impl->version = kSchemaVersion;
  }
  impl->db = std::move(*db);
  return Cache(std::move(impl));
}

// ---------------------------------------------------------------------------
// Rows <-> records.

const char* const kBinaryColumns =
    "key, kernel_name, lowered_name, arch, generator_version, nvrtc_version, cubin, ptx, source, "
    "spec, resources, options, compile_ms, created_at";
const char* const kBinaryColumnsNoPayload =
    "key, kernel_name, lowered_name, arch, generator_version, nvrtc_version, X'', '', '', "
    "spec, resources, options, compile_ms, created_at";
const char* const kTuningColumns =
    "key, gpu_name, arch, driver_version, nvrtc_version, generator_version, ffnjit_version, "
    "layer_signature, bucket_min, bucket_max, winner, candidates, dense_us, winner_us, untimed, "
    "created_at";

namespace {

Status parse_json(const std::string& text, const char* column, const std::string& key,
                  nlohmann::json* out) {
  *out = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (out->is_discarded())
    return io_error(
        "record " + key + " is damaged: its " + column +
        " is not JSON; run `ffnjit cache verify`, then `ffnjit cache gc` or tune again");
  return {};
}

}  // namespace

Expected<BinaryRecord> binary_from_row(const sql::Stmt& st) {
  BinaryRecord r;
  r.key = st.text(0);
  r.kernel_name = st.text(1);
  r.lowered_name = st.text(2);
  r.arch = st.text(3);
  r.generator_version = st.text(4);
  r.nvrtc_version = st.text(5);
  r.cubin = st.blob(6);
  r.ptx = st.blob(7);
  r.source = st.blob(8);
  r.spec = st.text(9);
  FFNJIT_TRY(parse_json(st.text(10), "resources", r.key, &r.resources));
  FFNJIT_TRY(parse_json(st.text(11), "options", r.key, &r.options));
  r.compile_ms = st.f64(12);
  r.created_at_ms = st.i64(13);
  return r;
}

Expected<TuningRecord> tuning_from_row(const sql::Stmt& st) {
  TuningRecord r;
  const std::string key = st.text(0);
  r.toolchain = {st.text(1), st.text(2), st.text(3), st.text(4), st.text(5)};
  r.ffnjit_version = st.text(6);
  r.layer_signature = st.text(7);
  r.bucket_min = st.i64(8);
  r.bucket_max = st.i64(9);
  FFNJIT_TRY(parse_json(st.text(10), "winner", key, &r.winner));
  FFNJIT_TRY(parse_json(st.text(11), "candidates", key, &r.candidates));
  if (!st.is_null(12)) r.dense_us = st.f64(12);
  if (!st.is_null(13)) r.winner_us = st.f64(13);
  r.untimed = st.i64(14) != 0;
  r.created_at_ms = st.i64(15);
  return r;
}

namespace {

Status refuse_incomplete(const std::vector<std::string>& p, const std::string& what) {
  if (p.empty()) return {};
  return user_error("refusing to store an incomplete " + what + ": " + join(p, "; ") +
                    " (this is a bug in the caller)");
}

Status require_writable(const Cache::Impl& impl) {
  if (impl.read_only)
    return user_error(impl.path + " was opened read-only; open it without read_only to write");
  return {};
}

// Layer filter: a glob when it has wildcards, else a substring.
bool layer_matches(const std::string& filter, const std::string& layer) {
  if (filter.empty()) return true;
  if (filter.find_first_of("*?") != std::string::npos) return glob_match(filter, layer);
  return layer.find(filter) != std::string::npos;
}

// The winner's kernel names, by the convention documented on TuningRecord::winner.
bool winner_matches(const std::string& glob, const nlohmann::json& winner) {
  if (glob.empty()) return true;
  if (!winner.is_object()) return false;
  if (auto it = winner.find("kernel");
      it != winner.end() && it->is_string() && glob_match(glob, it->get<std::string>()))
    return true;
  if (auto it = winner.find("kernels"); it != winner.end() && it->is_array())
    for (const auto& k : *it)
      if (k.is_string() && glob_match(glob, k.get<std::string>())) return true;
  return false;
}

}  // namespace

Status Cache::put_binary(const BinaryRecord& r) {
  FFNJIT_TRY(require_writable(*impl_));
  FFNJIT_TRY(refuse_incomplete(problems(r), "binary record for " + r.kernel_name));
  auto& db = impl_->db;
  auto st = db.prepare(std::string("INSERT INTO binaries (") + kBinaryColumns +
                       ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) "
                       "ON CONFLICT (key) DO NOTHING");
  if (!st) return st.error();
  st->bind(1, r.key).bind(2, r.kernel_name).bind(3, r.lowered_name).bind(4, r.arch);
  st->bind(5, r.generator_version).bind(6, r.nvrtc_version).bind_blob(7, r.cubin).bind(8, r.ptx);
  st->bind(9, r.source).bind(10, r.spec).bind(11, r.resources.dump()).bind(12, r.options.dump());
  st->bind(13, r.compile_ms).bind(14, r.created_at_ms ? r.created_at_ms : now_ms());
  // Prepared and bound before BEGIN so the write lock is held only for the insert.
  auto txn = sql::WriteTxn::begin(db);
  if (!txn) return txn.error();
  FFNJIT_TRY(st->run());
  return txn->commit();
}

namespace {

// The row with this key, parsed by `from_row`; nullopt when there is none.
template <class R>
Expected<std::optional<R>> get_by_key(sql::Db& db, const char* columns, const char* table, const std::string& key,
                                      Expected<R> (*from_row)(const sql::Stmt&)) {
  auto st = db.prepare(std::string("SELECT ") + columns + " FROM " + table + " WHERE key = ?1");
  if (!st) return st.error();
  st->bind(1, key);
  auto row = st->step();
  if (!row) return row.error();
  if (!*row) return std::optional<R>();
  auto r = from_row(*st);
  if (!r) return r.error();
  return std::optional<R>(std::move(*r));
}

// Visits the binaries a filter selects (arch in SQL, name glob here), in name order.
template <class Visit>
Status scan_binaries(sql::Db& db, const ListFilter& f, bool with_payload, Visit visit) {
  auto st = db.prepare(std::string("SELECT ") + (with_payload ? kBinaryColumns : kBinaryColumnsNoPayload) +
                       " FROM binaries WHERE (?1 = '' OR arch = ?1) ORDER BY kernel_name, key");
  if (!st) return st.error();
  st->bind(1, f.arch);
  return st->each_row([&]() -> Status {
    if (!f.name.empty() && !glob_match(f.name, st->text(1))) return {};
    auto r = binary_from_row(*st);
    return visit(r);
  });
}

}  // namespace

Expected<std::optional<BinaryRecord>> Cache::get_binary(const std::string& key) {
  return get_by_key(impl_->db, kBinaryColumns, "binaries", key, binary_from_row);
}

Expected<Found<BinaryRecord>> Cache::find_binary(const std::string& key,
                                                 const ToolchainIdentity& current) {
  Found<BinaryRecord> out;
  auto st =
      impl_->db.prepare(std::string("SELECT ") + kBinaryColumns + " FROM binaries WHERE key = ?1");
  if (!st) return st.error();
  st->bind(1, key);
  auto row = st->step();
  if (!row) return row.error();
  if (!*row) return out;
  auto r = binary_from_row(*st);
  if (auto why = unusable(r, &current))
    out.skipped.add(*why);
  else
    out.record = std::move(*r);
  return out;
}

Expected<std::vector<BinaryRecord>> Cache::list_binaries(const ListFilter& f) {
  std::vector<BinaryRecord> out;
  FFNJIT_TRY(scan_binaries(impl_->db, f, f.with_payload, [&](Expected<BinaryRecord>& r) -> Status {
    if (!r) return r.error();
    out.push_back(std::move(*r));
    return {};
  }));
  return out;
}

Expected<Loaded<BinaryRecord>> Cache::load_binaries(const ToolchainIdentity& current,
                                                    const ListFilter& f) {
  Loaded<BinaryRecord> out;
  FFNJIT_TRY(scan_binaries(impl_->db, f, true, [&](Expected<BinaryRecord>& r) -> Status {
    if (auto why = unusable(r, &current))
      out.skipped.add(*why);
    else
      out.records.push_back(std::move(*r));
    return {};
  }));
  return out;
}

Status Cache::put_tuning(const TuningRecord& r) {
  FFNJIT_TRY(require_writable(*impl_));
  FFNJIT_TRY(refuse_incomplete(problems(r), "tuning record for " + r.layer_signature));
  auto& db = impl_->db;
  auto st =
      db.prepare(std::string("INSERT INTO tuning (") + kTuningColumns +
                 ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                 "?16) ON CONFLICT (key) DO UPDATE SET ffnjit_version = excluded.ffnjit_version, "
                 "winner = excluded.winner, candidates = excluded.candidates, "
                 "dense_us = excluded.dense_us, winner_us = excluded.winner_us, "
                 "untimed = excluded.untimed, created_at = excluded.created_at");
  if (!st) return st.error();
  const ToolchainIdentity& t = r.toolchain;
  st->bind(1, r.key()).bind(2, t.gpu_name).bind(3, t.arch).bind(4, t.driver_version);
  st->bind(5, t.nvrtc_version).bind(6, t.generator_version).bind(7, r.ffnjit_version);
  st->bind(8, r.layer_signature).bind(9, r.bucket_min).bind(10, r.bucket_max);
  st->bind(11, r.winner.dump()).bind(12, r.candidates.dump());
  if (r.dense_us)
    st->bind(13, *r.dense_us);
  else
    st->bind_null(13);
  if (r.winner_us)
    st->bind(14, *r.winner_us);
  else
    st->bind_null(14);
  st->bind(15, int64_t(r.untimed)).bind(16, r.created_at_ms ? r.created_at_ms : now_ms());
  auto txn = sql::WriteTxn::begin(db);
  if (!txn) return txn.error();
  FFNJIT_TRY(st->run());
  return txn->commit();
}

Expected<Found<TuningRecord>> Cache::find_tuning(const ToolchainIdentity& current,
                                                 const std::string& layer_signature,
                                                 int64_t tokens) {
  Found<TuningRecord> out;
  auto st = impl_->db.prepare(std::string("SELECT ") + kTuningColumns +
                              " FROM tuning WHERE layer_signature = ?1 AND bucket_min <= ?2 AND "
                              "bucket_max >= ?2 ORDER BY bucket_max - bucket_min, untimed, "
                              "created_at DESC, key");
  if (!st) return st.error();
  st->bind(1, layer_signature).bind(2, tokens);
  FFNJIT_TRY(st->each_row([&] {
    auto r = tuning_from_row(*st);
    if (auto why = unusable(r, &current))
      out.skipped.add(*why);
    else if (!out.record)
      out.record = std::move(*r);
  }));
  return out;
}

Expected<std::optional<TuningRecord>> Cache::get_tuning(const std::string& key) {
  return get_by_key(impl_->db, kTuningColumns, "tuning", key, tuning_from_row);
}

namespace {

template <class Visit>
Status scan_tunings(sql::Db& db, const ListFilter& f, Visit visit) {
  auto st = db.prepare(std::string("SELECT ") + kTuningColumns +
                       " FROM tuning WHERE (?1 = '' OR arch = ?1) ORDER BY layer_signature, "
                       "bucket_min, bucket_max, gpu_name, arch, driver_version, nvrtc_version, "
                       "generator_version");
  if (!st) return st.error();
  st->bind(1, f.arch);
  return st->each_row([&]() -> Status {
    if (!layer_matches(f.layer, st->text(7))) return {};
    auto r = tuning_from_row(*st);
    if (r && !winner_matches(f.name, r->winner)) return {};
    return visit(r);
  });
}

}  // namespace

Expected<std::vector<TuningRecord>> Cache::list_tunings(const ListFilter& f) {
  std::vector<TuningRecord> out;
  FFNJIT_TRY(scan_tunings(impl_->db, f, [&](Expected<TuningRecord>& r) -> Status {
    if (!r) return r.error();
    out.push_back(std::move(*r));
    return {};
  }));
  return out;
}

Expected<Loaded<TuningRecord>> Cache::load_tunings(const ToolchainIdentity& current,
                                                   const ListFilter& f) {
  Loaded<TuningRecord> out;
  FFNJIT_TRY(scan_tunings(impl_->db, f, [&](Expected<TuningRecord>& r) -> Status {
    if (auto why = unusable(r, &current))
      out.skipped.add(*why);
    else
      out.records.push_back(std::move(*r));
    return {};
  }));
  return out;
}

Expected<std::vector<std::string>> Cache::keys_with_prefix(const std::string& prefix) {
  std::vector<std::string> out;
  // Keys are lower-case hex digits, all below 'g': a range scan on the primary key.
  auto st = impl_->db.prepare(
      "SELECT key FROM binaries WHERE key >= ?1 AND key < ?1 || 'g' "
      "UNION ALL SELECT key FROM tuning WHERE key >= ?1 AND key < ?1 || 'g'");
  if (!st) return st.error();
  st->bind(1, prefix);
  FFNJIT_TRY(st->each_row([&] { out.push_back(st->text(0)); }));
  return out;
}

}  // namespace ffnjit::cache
