// The kernel cache's record operations: rows <-> records, binaries and tuning records.
// Opening, classifying and migrating the file is cache/open.cpp.
#include "cache/cache.hpp"

#include "support/json.hpp"

#include <chrono>

#include "cache/impl.hpp"
#include "support/hash.hpp"
#include "support/json.hpp"
#include "support/strings.hpp"

namespace ffnjit::cache {

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

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

// ---------------------------------------------------------------------------
// Rows <-> records.

const char* const kBinaryColumns =
    "key, kernel_name, lowered_name, arch, generator_version, nvrtc_version, cubin, ptx, source, "
    "spec, resources, options, compile_ms, created_at, templates_hash, cubin_sha256";
const char* const kBinaryColumnsNoPayload =
    "key, kernel_name, lowered_name, arch, generator_version, nvrtc_version, X'', '', '', "
    "spec, resources, options, compile_ms, created_at, templates_hash, cubin_sha256";
const char* const kTuningColumns =
    "key, gpu_name, arch, driver_version, nvrtc_version, generator_version, ffnjit_version, "
    "layer_signature, bucket_min, bucket_max, winner, candidates, dense_us, winner_us, untimed, "
    "created_at";

namespace {

// Columns of an imported file are untrusted: the shared parser bounds their nesting, so
// no later dump() or destructor recurses on attacker depth.
Status parse_json(const std::string& text, const char* column, const std::string& key,
                  nlohmann::json* out) {
  auto j = ffnjit::parse_json(text, column);
  if (j) *out = std::move(*j);
  if (!j)
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
  r.templates_hash = st.text(14);
  r.cubin_sha256 = st.text(15);
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

Status Cache::put_binary(const BinaryRecord& record) {
  FFNJIT_TRY(require_writable(*impl_));
  BinaryRecord r = record;
  if (r.cubin_sha256.empty()) r.cubin_sha256 = sha256_hex(r.cubin);
  FFNJIT_TRY(refuse_incomplete(problems(r), "binary record for " + r.kernel_name));
  auto& db = impl_->db;
  // A present key holds the same bytes, unless that row is damaged (a flipped bit, a
  // hand edit): then the sound record replaces it.
  auto st =
      db.prepare(std::string("INSERT INTO binaries (") + kBinaryColumns +
                 ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                 "?16) ON CONFLICT (key) DO UPDATE SET kernel_name = excluded.kernel_name, "
                 "lowered_name = excluded.lowered_name, arch = excluded.arch, "
                 "generator_version = excluded.generator_version, "
                 "nvrtc_version = excluded.nvrtc_version, cubin = excluded.cubin, "
                 "ptx = excluded.ptx, source = excluded.source, spec = excluded.spec, "
                 "resources = excluded.resources, options = excluded.options, "
                 "compile_ms = excluded.compile_ms, created_at = excluded.created_at, "
                 "templates_hash = excluded.templates_hash, "
                 "cubin_sha256 = excluded.cubin_sha256 WHERE ?17");
  if (!st) return st.error();
  st->bind(1, r.key).bind(2, r.kernel_name).bind(3, r.lowered_name).bind(4, r.arch);
  st->bind(5, r.generator_version).bind(6, r.nvrtc_version).bind_blob(7, r.cubin).bind(8, r.ptx);
  st->bind(9, r.source).bind(10, r.spec).bind(11, r.resources.dump()).bind(12, r.options.dump());
  st->bind(13, r.compile_ms).bind(14, r.created_at_ms ? r.created_at_ms : now_ms());
  st->bind(15, r.templates_hash).bind(16, r.cubin_sha256);
  // Prepared and bound before BEGIN so the write lock is held only for the insert.
  auto txn = sql::WriteTxn::begin(db);
  if (!txn) return txn.error();
  bool replace = true;
  {
    auto sel =
        db.prepare(std::string("SELECT ") + kBinaryColumns + " FROM binaries WHERE key = ?1");
    if (!sel) return sel.error();
    sel->bind(1, r.key);
    auto row = sel->step();
    if (!row) return row.error();
    if (*row) replace = unusable(binary_from_row(*sel), nullptr).has_value();
  }
  st->bind(17, int64_t(replace));
  FFNJIT_TRY(st->run());
  return txn->commit();
}

namespace {

// The row with this key, parsed by `from_row`; nullopt when there is none.
template <class R>
Expected<std::optional<R>> get_by_key(sql::Db& db, const char* columns, const char* table,
                                      const std::string& key,
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
  auto st = db.prepare(std::string("SELECT ") +
                       (with_payload ? kBinaryColumns : kBinaryColumnsNoPayload) +
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
