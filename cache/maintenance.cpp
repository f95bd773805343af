// Cache maintenance: export to a portable file, merge/import, gc, verify.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <set>

#include "cache/cache.hpp"
#include "cache/impl.hpp"
#include "support/strings.hpp"

namespace ffnjit::cache {
namespace {

const char* const kNoOverwrite =
    "; ffnjit does not overwrite files: remove it or pick another name";

// Rows copied per write transaction, and bytes: keeps each lock short.
constexpr int kBatchRows = 256;
constexpr size_t kBatchBytes = size_t(32) << 20;

std::string temp_name(const std::string& dest) {
  std::random_device rd;
  return dest + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd() % 1000000);
}

Status fsync_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error("cannot reopen " + path + ": " + std::strerror(errno));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return io_error("cannot sync " + path + ": " + std::strerror(errno));
  return {};
}

// Moves `tmp` to `dest` unless `dest` exists (never replaces a file).
Status publish(const std::string& tmp, const std::string& dest) {
  if (::link(tmp.c_str(), dest.c_str()) == 0) {
    ::unlink(tmp.c_str());
    return {};
  }
  int err = errno;
  if (err == EEXIST) {
    ::unlink(tmp.c_str());
    return user_error(dest + " already exists" + kNoOverwrite);
  }
  // File systems without hard links: check, then rename (a narrow race, documented).
  struct stat st;
  if ((err == EPERM || err == ENOTSUP || err == EOPNOTSUPP) && ::stat(dest.c_str(), &st) != 0 &&
      ::rename(tmp.c_str(), dest.c_str()) == 0)
    return {};
  ::unlink(tmp.c_str());
  return io_error("cannot create " + dest + ": " + std::strerror(err) +
                  "; check that its directory exists and is writable");
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

std::string placeholders(int n) {
  std::string s;
  for (int i = 1; i <= n; ++i) s += (i > 1 ? ", ?" : "?") + std::to_string(i);
  return s;
}

constexpr int kBinaryColumnCount = 16;
constexpr int kTuningColumnCount = 16;

}  // namespace

Status Cache::export_to(const std::string& dest) {
  struct stat st;
  if (::lstat(dest.c_str(), &st) == 0) return user_error(dest + " already exists" + kNoOverwrite);
  const std::string tmp = temp_name(dest);
  // VACUUM INTO writes a compact, consistent snapshot from one read transaction,
  // with application_id and user_version: byte-identical rows, no other content.
  auto vac = impl_->db.prepare("VACUUM INTO ?1");
  if (!vac) return vac.error();
  vac->bind(1, tmp);
  // query_only (see Cache::open) would refuse writing even the new file.
  auto qo = impl_->db.query_int("PRAGMA query_only");
  bool query_only = qo && *qo != 0;
  if (query_only) FFNJIT_TRY(impl_->db.exec("PRAGMA query_only = 0"));
  Status vacuumed = vac->run();
  if (query_only) FFNJIT_TRY(impl_->db.exec("PRAGMA query_only = 1"));
  if (Status s = vacuumed; !s) {
    ::unlink(tmp.c_str());
    return io_error("cannot export to " + dest + ": " + s.message());
  }
  {
    // A shipped file must be self-contained and readable from read-only media: no WAL.
    auto out = open_db(tmp, SQLITE_OPEN_READWRITE);
    Status s = out ? out->exec("PRAGMA journal_mode = DELETE") : Status(out.error());
    if (!s) {
      ::unlink(tmp.c_str());
      return s;
    }
  }
  if (Status s = fsync_file(tmp); !s) {
    ::unlink(tmp.c_str());
    return s;
  }
  return publish(tmp, dest);
}

namespace {

std::string short_key(const std::string& key) {
  return key.substr(0, 12);
}

// "record 3fa9c1e2b0d4 (ffnjit_gate_...) in x.ffnjit: <problem>; nothing was imported"
Error refuse_record(const std::string& other, const char* kind, const std::string& key,
                    const std::string& label, const std::string& problem) {
  return user_error(
      "refusing " + other + ": its " + kind + " record " + short_key(key) + " (" + label + ") " +
      problem +
      "; nothing was imported. The file is damaged or forged: get it again from its source, "
      "or tune on this machine");
}

// "its winner is not JSON" out of a row decoder's "record K is damaged: its winner is
// not JSON; run ..." (the refusal names the record and the fix itself).
std::string damage(const Error& e) {
  const std::string& m = e.message;
  size_t at = m.find("is damaged: ");
  if (at == std::string::npos) return m;
  at += 12;
  return m.substr(at, m.find(';', at) - at);
}

// Is `key` a sound binary of the destination cache?
Expected<bool> have_sound_binary(sql::Db& db, const std::string& key) {
  auto st = db.prepare(std::string("SELECT ") + kBinaryColumns + " FROM binaries WHERE key = ?1");
  if (!st) return st.error();
  st->bind(1, key);
  auto row = st->step();
  if (!row) return row.error();
  return *row && !unusable(binary_from_row(*st), nullptr);
}

// Pass 1 of merge_from: every record of `in` verified, nothing written. Fills the
// keys to copy and to leave out.
struct Verdict {
  std::set<std::string> binaries;   // verified: copy
  std::set<std::string> unchecked;  // check_binary could not check: leave out
  std::set<std::string> skip_tunings;
  int rebuilt = 0, missing_binaries = 0;
};

Expected<Verdict> verify_other(sql::Db& in, sql::Db& out, const std::string& other,
                               const MergeOptions& o) {
  Verdict v;
  {
    auto sel = in.prepare(std::string("SELECT ") + kBinaryColumns + " FROM binaries ORDER BY key");
    if (!sel) return sel.error();
    FFNJIT_TRY(sel->each_row([&]() -> Status {
      const std::string key = sel->text(0), name = sel->text(1);
      auto r = binary_from_row(*sel);
      if (!r) return refuse_record(other, "binary", key, name, "is damaged: " + damage(r.error()));
      if (auto p = problems(*r); !p.empty())
        return refuse_record(other, "binary", key, name, "fails: " + join(p, "; "));
      if (o.check_binary) {
        auto checked = o.check_binary(*r);
        if (!checked)
          return refuse_record(other, "binary", key, name,
                               "fails the rebuild: " + checked.error().message);
        if (!*checked) {
          v.unchecked.insert(key);
          return {};
        }
        ++v.rebuilt;
      }
      v.binaries.insert(key);
      return {};
    }));
  }
  auto sel = in.prepare(std::string("SELECT ") + kTuningColumns + " FROM tuning ORDER BY key");
  if (!sel) return sel.error();
  FFNJIT_TRY(sel->each_row([&]() -> Status {
    const std::string key = sel->text(0), layer = sel->text(7);
    auto r = tuning_from_row(*sel);
    if (!r) return refuse_record(other, "tuning", key, layer, "is damaged: " + damage(r.error()));
    if (auto p = problems(*r); !p.empty())
      return refuse_record(other, "tuning", key, layer, "fails: " + join(p, "; "));
    if (r->key() != key)
      return refuse_record(other, "tuning", key, layer,
                           "has a key that does not match its identity");
    bool missing = false;
    for (const auto& k : winner_keys(r->winner)) {
      if (v.unchecked.count(k)) {
        v.skip_tunings.insert(key);  // its kernels stay out: so does it
        return {};
      }
      if (v.binaries.count(k)) continue;
      auto here = have_sound_binary(out, k);
      if (!here) return here.error();
      missing = missing || !*here;
    }
    v.missing_binaries += missing;
    return {};
  }));
  return v;
}

}  // namespace

Expected<MergeReport> Cache::merge_from(const std::string& other, const MergeOptions& o) {
  if (impl_->read_only)
    return user_error(impl_->path +
                      " was opened read-only; open it without read_only to merge into it");
  if (same_file(other, impl_->path))
    return user_error("cannot merge " + other + " into itself; pass another cache file");
  // The other file is untrusted input: opened so that nothing can modify it, then
  // verified whole before the first write. Its schema version is at most ours (open
  // refuses newer ones); when a v3 exists, copy older files to a temporary file and
  // migrate that copy before reading it.
  auto src = Cache::open(other, {.read_only = true, .create_if_missing = false, .untrusted = true});
  if (!src) return src.error();
  sql::Db& in = src->impl_->db;
  sql::Db& out = impl_->db;
  // One read snapshot for both passes: what is copied is what was verified.
  FFNJIT_TRY(in.exec("BEGIN"));
  auto verdict = verify_other(in, out, other, o);
  if (!verdict) return verdict.error();
  MergeReport rep;
  rep.binaries_rebuilt = verdict->rebuilt;
  rep.binaries_unverifiable = int(verdict->unchecked.size());
  rep.tunings_unverifiable = int(verdict->skip_tunings.size());
  rep.tunings_missing_binaries = verdict->missing_binaries;

  // Binaries: content-addressed, so a present key already holds these bytes.
  {
    auto sel = in.prepare(std::string("SELECT ") + kBinaryColumns + " FROM binaries ORDER BY key");
    if (!sel) return sel.error();
    auto ins = out.prepare(std::string("INSERT INTO binaries (") + kBinaryColumns + ") VALUES (" +
                           placeholders(kBinaryColumnCount) + ") ON CONFLICT (key) DO NOTHING");
    if (!ins) return ins.error();
    bool done = false;
    while (!done) {
      auto txn = sql::WriteTxn::begin(out);
      if (!txn) return txn.error();
      size_t bytes = 0;
      for (int n = 0; n < kBatchRows && bytes < kBatchBytes; ++n) {
        auto row = sel->step();
        if (!row) return row.error();
        if (!*row) {
          done = true;
          break;
        }
        if (!verdict->binaries.count(sel->text(0))) continue;
        bytes += sel->bytes(6) + sel->bytes(8);
        for (int c = 0; c < kBinaryColumnCount; ++c) ins->bind_copy(c + 1, *sel, c);
        FFNJIT_TRY(ins->run());
        (sqlite3_changes(out.handle()) ? rep.binaries_added : rep.binaries_present)++;
        ins->reset();
      }
      FFNJIT_TRY(txn->commit());
    }
  }

  // Tuning records: the newer measurement wins; ties keep what is here.
  {
    auto sel = in.prepare(std::string("SELECT ") + kTuningColumns + " FROM tuning ORDER BY key");
    if (!sel) return sel.error();
    auto have = out.prepare("SELECT created_at FROM tuning WHERE key = ?1");
    if (!have) return have.error();
    auto ins = out.prepare(
        std::string("INSERT INTO tuning (") + kTuningColumns + ") VALUES (" +
        placeholders(kTuningColumnCount) +
        ") ON CONFLICT (key) DO UPDATE SET ffnjit_version = excluded.ffnjit_version, "
        "winner = excluded.winner, candidates = excluded.candidates, dense_us = excluded.dense_us, "
        "winner_us = excluded.winner_us, untimed = excluded.untimed, created_at = "
        "excluded.created_at "
        "WHERE excluded.created_at > tuning.created_at");
    if (!ins) return ins.error();
    bool done = false;
    while (!done) {
      auto txn = sql::WriteTxn::begin(out);
      if (!txn) return txn.error();
      for (int n = 0; n < kBatchRows; ++n) {
        auto row = sel->step();
        if (!row) return row.error();
        if (!*row) {
          done = true;
          break;
        }
        if (verdict->skip_tunings.count(sel->text(0))) continue;
        const int64_t created = sel->i64(15);
        have->bind(1, sel->text(0));
        auto existing = have->step();
        if (!existing) return existing.error();
        std::optional<int64_t> present;
        if (*existing) present = have->i64(0);
        have->reset();
        for (int c = 0; c < kTuningColumnCount; ++c) ins->bind_copy(c + 1, *sel, c);
        FFNJIT_TRY(ins->run());
        ins->reset();
        if (!present)
          ++rep.tunings_added;
        else if (created > *present)
          ++rep.tunings_replaced;
        else
          ++rep.tunings_kept;
      }
      FFNJIT_TRY(txn->commit());
    }
  }
  sqlite3_exec(in.handle(), "COMMIT", nullptr, nullptr, nullptr);  // only read
  return rep;
}

Expected<GcReport> Cache::gc(const GcOptions& o) {
  if (impl_->read_only) return user_error(impl_->path + " was opened read-only; gc needs to write");
  GcReport rep;
  const int64_t now = o.now_ms ? o.now_ms : now_ms();
  const int64_t cutoff = o.older_than_days ? now - *o.older_than_days * 86400000LL : INT64_MIN;
  sql::Db& db = impl_->db;

  // Decide first (reading), then delete in short write transactions. Damaged records
  // are always dropped: no toolchain can use them.
  auto decide = [&](const std::optional<SkipReason>& unusable, int64_t created) {
    if (unusable) return rep.unusable.add(*unusable), true;
    if (created < cutoff) return ++rep.too_old, true;
    return false;
  };
  std::vector<std::string> binaries, tunings;
  {
    auto st = db.prepare(std::string("SELECT ") + kBinaryColumns + " FROM binaries");
    if (!st) return st.error();
    FFNJIT_TRY(st->each_row([&] {
      const std::optional<SkipReason> why =
          unusable(binary_from_row(*st), o.unusable_for ? &*o.unusable_for : nullptr);
      if (decide(why, st->i64(13))) binaries.push_back(st->text(0));
    }));
  }
  {
    auto st = db.prepare(std::string("SELECT ") + kTuningColumns + " FROM tuning");
    if (!st) return st.error();
    FFNJIT_TRY(st->each_row([&] {
      auto r = tuning_from_row(*st);
      std::optional<SkipReason> why = unusable(r, o.unusable_for ? &*o.unusable_for : nullptr);
      if (!why && r->key() != st->text(0)) why = SkipReason::kDamaged;  // a row under a foreign key
      if (decide(why, st->i64(15))) tunings.push_back(st->text(0));
    }));
  }
  auto drop = [&](const char* table, const std::vector<std::string>& keys, int* removed) -> Status {
    auto del = db.prepare(std::string("DELETE FROM ") + table + " WHERE key = ?1");
    if (!del) return del.error();
    for (size_t i = 0; i < keys.size();) {
      auto txn = sql::WriteTxn::begin(db);
      if (!txn) return txn.error();
      for (size_t end = std::min(keys.size(), i + 512); i < end; ++i) {
        del->bind(1, keys[i]);
        FFNJIT_TRY(del->run());
        *removed += sqlite3_changes(db.handle());
        del->reset();
      }
      FFNJIT_TRY(txn->commit());
    }
    return {};
  };
  FFNJIT_TRY(drop("binaries", binaries, &rep.binaries_removed));
  FFNJIT_TRY(drop("tuning", tunings, &rep.tunings_removed));
  if (rep.binaries_removed + rep.tunings_removed > 0) {
    // Give the freed pages back to the file system; a busy checkpoint is harmless.
    auto txn = sql::WriteTxn::begin(db);
    if (!txn) return txn.error();
    FFNJIT_TRY(db.exec("PRAGMA incremental_vacuum"));
    FFNJIT_TRY(txn->commit());
    sqlite3_wal_checkpoint_v2(db.handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  }
  return rep;
}

Expected<VerifyReport> Cache::verify(const VerifyOptions& o) {
  VerifyReport rep;
  sql::Db& db = impl_->db;
  {
    auto st = db.prepare("PRAGMA integrity_check(20)");
    if (!st) return st.error();
    std::vector<std::string> lines;
    FFNJIT_TRY(st->each_row([&] { lines.push_back(st->text(0)); }));
    rep.integrity.clear();
    for (size_t i = 0; i < lines.size(); ++i) rep.integrity += (i ? "; " : "") + lines[i];
  }
  auto issue = [&](const char* kind, std::string key, std::string label, std::string problem) {
    rep.issues.push_back({kind, std::move(key), std::move(label), std::move(problem)});
  };
  std::set<std::string> sound, all;  // binary keys: passing every check; present
  {
    auto st = db.prepare(std::string("SELECT ") + kBinaryColumns + " FROM binaries ORDER BY key");
    if (!st) return st.error();
    FFNJIT_TRY(st->each_row([&] {
      ++rep.binaries;
      all.insert(st->text(0));
      auto r = binary_from_row(*st);
      if (!r) return issue("binary", st->text(0), st->text(1), r.error().message);
      auto p = problems(*r);
      if (r->created_at_ms <= 0) p.push_back("created_at is not a time");
      for (auto& x : p) issue("binary", r->key, r->kernel_name, x);
      if (!p.empty()) return;
      sound.insert(r->key);
      if (o.rebuild_check) {
        auto same = o.rebuild_check(*r);
        if (!same)
          return issue("binary", r->key, r->kernel_name,
                       "fails the rebuild: " + same.error().message);
        (*same ? rep.rebuilt : rep.not_rebuildable)++;
      }
      if (!o.load_check) return;
      auto loaded = o.load_check(*r);
      if (!loaded)
        issue("binary", r->key, r->kernel_name, "cubin does not load: " + loaded.error().message);
      else
        (*loaded ? rep.cubins_loaded : rep.cubins_not_applicable)++;
    }));
  }
  {
    auto st = db.prepare(std::string("SELECT ") + kTuningColumns + " FROM tuning ORDER BY key");
    if (!st) return st.error();
    FFNJIT_TRY(st->each_row([&] {
      ++rep.tunings;
      auto r = tuning_from_row(*st);
      if (!r) return issue("tuning", st->text(0), st->text(7), r.error().message);
      auto p = problems(*r);
      if (r->created_at_ms <= 0) p.push_back("created_at is not a time");
      if (r->key() != st->text(0))
        p.push_back("key does not match its identity columns (edited by hand?)");
      for (auto& x : p) issue("tuning", st->text(0), r->layer_signature, x);
      for (const auto& k : winner_keys(r->winner)) {
        if (sound.count(k)) continue;
        if (all.count(k))
          issue("tuning", st->text(0), r->layer_signature,
                "its winner uses binary " + k.substr(0, 12) + ", which is damaged");
        else
          rep.missing_binaries.push_back(
              {"tuning", st->text(0), r->layer_signature,
               "its winner uses binary " + k.substr(0, 12) + ", which is not in the cache"});
      }
    }));
  }
  return rep;
}

}  // namespace ffnjit::cache
