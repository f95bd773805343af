// Unit tests of the kernel cache: records, lookups, skip reports, bad files, export/import, gc,
// verify.
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cache/cache.hpp"
#include "support/strings.hpp"
#include "tests/cache/cache_test_util.hpp"

using namespace ffnjit;
using namespace ffnjit::cache;
using namespace ffnjit::cache::testing;
namespace fs = std::filesystem;

namespace {

Cache open_ok(const std::string& path, OpenOptions o = {}) {
  auto c = Cache::open(path, o);
  INFO((c ? "" : c.error().message));
  REQUIRE(c);
  return std::move(*c);
}

std::string slurp(const std::string& path) {
  std::string s;
  read_file(path, &s);
  return s;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// Runs SQL on a file with the raw SQLite API (for making foreign or damaged files).
void raw_sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  INFO((err ? err : ""));
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

int64_t raw_int(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* st = nullptr;
  int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

}  // namespace

TEST_CASE("a new cache is marked, versioned, in WAL mode, in a 0700 directory") {
  TempDir t;
  std::string path = t.file("a/b/cache.db");
  {
    Cache c = open_ok(path);
    CHECK(c.schema_version() == kSchemaVersion);
  }
  CHECK(raw_int(path, "PRAGMA application_id") == int32_t(kApplicationId));
  CHECK(raw_int(path, "PRAGMA user_version") == kSchemaVersion);
  CHECK(raw_int(path, "PRAGMA auto_vacuum") == 2);  // incremental
  struct stat st;
  REQUIRE(::stat(t.file("a/b").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  // Reopening an existing cache is fine, read-only too.
  open_ok(path);
  open_ok(path, {.read_only = true});
}

TEST_CASE("binaries round-trip exactly; a present key is kept") {
  TempDir t;
  Cache c = open_ok(t.file("cache.db"));
  BinaryRecord b = make_binary(1, 2);
  b.created_at_ms = 1234;
  REQUIRE(c.put_binary(b));
  auto got = c.get_binary(b.key);
  REQUIRE(got);
  REQUIRE(got->has_value());
  const BinaryRecord& g = **got;
  CHECK(g.key == b.key);
  CHECK(g.kernel_name == b.kernel_name);
  CHECK(g.lowered_name == b.lowered_name);
  CHECK(g.cubin == b.cubin);
  CHECK(g.ptx == b.ptx);
  CHECK(g.source == b.source);
  CHECK(g.spec == b.spec);
  CHECK(g.resources == b.resources);
  CHECK(g.options == b.options);
  CHECK(g.compile_ms == b.compile_ms);
  CHECK(g.created_at_ms == 1234);

  BinaryRecord again = b;
  again.compile_ms = 999;
  REQUIRE(c.put_binary(again));
  CHECK((*c.get_binary(b.key))->compile_ms == b.compile_ms);
  CHECK(c.list_binaries()->size() == 1);

  auto none = c.get_binary(std::string(64, '0'));
  REQUIRE(none);
  CHECK_FALSE(none->has_value());

  ListFilter no_payload;
  no_payload.with_payload = false;
  auto light = c.list_binaries(no_payload);
  REQUIRE(light);
  REQUIRE(light->size() == 1);
  CHECK((*light)[0].cubin.empty());
  CHECK((*light)[0].kernel_name == b.kernel_name);
}

TEST_CASE("incomplete records are refused") {
  TempDir t;
  Cache c = open_ok(t.file("cache.db"));
  BinaryRecord b = make_binary(1, 1);
  b.cubin.clear();
  auto s = c.put_binary(b);
  REQUIRE_FALSE(s);
  CHECK(s.message().find("cubin is empty") != std::string::npos);
  b = make_binary(1, 1);
  b.key = "not-a-key";
  CHECK_FALSE(c.put_binary(b));
  TuningRecord r = make_tuning(1, 1);
  r.bucket_min = 0;
  CHECK_FALSE(c.put_tuning(r));
  r = make_tuning(1, 1);
  r.winner_us.reset();
  CHECK_FALSE(c.put_tuning(r));
  r.untimed = true;  // compile-only records carry no times
  r.dense_us.reset();
  r.toolchain.gpu_name.clear();
  CHECK(c.put_tuning(r));
}

TEST_CASE("tuning records upsert by identity and bucket") {
  TempDir t;
  Cache c = open_ok(t.file("cache.db"));
  TuningRecord r = make_tuning(1, 1);
  REQUIRE(c.put_tuning(r));
  r.winner_us = 7.0;
  r.winner["family"] = "dense";
  REQUIRE(c.put_tuning(r));
  auto all = c.list_tunings();
  REQUIRE(all);
  REQUIRE(all->size() == 1);
  CHECK((*all)[0].winner_us == 7.0);
  CHECK((*all)[0].winner["family"] == "dense");
  auto by_key = c.get_tuning(r.key());
  REQUIRE(by_key);
  REQUIRE(by_key->has_value());
  CHECK((*by_key)->layer_signature == r.layer_signature);
  // Another bucket or another driver is another record.
  TuningRecord other = r;
  other.bucket_min = 17;
  other.bucket_max = 128;
  REQUIRE(c.put_tuning(other));
  other.toolchain.driver_version = "590.1";
  REQUIRE(c.put_tuning(other));
  CHECK(c.list_tunings()->size() == 3);
}

TEST_CASE("find_tuning picks the bucket holding the token count") {
  TempDir t;
  Cache c = open_ok(t.file("cache.db"));
  const std::string layer = make_tuning(0, 0).layer_signature;
  auto add = [&](int64_t lo, int64_t hi, const char* tag) {
    TuningRecord r = make_tuning(0, 0, h100(), lo, hi);
    r.winner["tag"] = tag;
    REQUIRE(c.put_tuning(r));
  };
  add(1, 1, "one");
  add(2, 16, "few");
  add(17, 128, "mid");
  add(129, int64_t(1) << 30, "big");
  add(1, 128, "wide");  // overlaps: the narrowest bucket wins
  auto tag = [&](int64_t tokens) -> std::string {
    auto f = c.find_tuning(h100(), layer, tokens);
    REQUIRE(f);
    return f->record ? f->record->winner["tag"].get<std::string>() : "none";
  };
  CHECK(tag(1) == "one");
  CHECK(tag(2) == "few");
  CHECK(tag(16) == "few");
  CHECK(tag(17) == "mid");
  CHECK(tag(128) == "mid");
  CHECK(tag(129) == "big");
  CHECK(tag(100000) == "big");
  auto other_layer = c.find_tuning(h100(), "layer-x", 4);
  REQUIRE(other_layer);
  CHECK_FALSE(other_layer->record);
}

TEST_CASE("records from another toolchain are skipped and reported, never loaded") {
  TempDir t;
  Cache c = open_ok(t.file("cache.db"));
  ToolchainIdentity old_nvrtc = h100();
  old_nvrtc.nvrtc_version = "12.4";
  ToolchainIdentity a100 = {"NVIDIA A100-SXM4-80GB", "sm_80", "580.65", "13.0", kGeneratorVersion};
  for (int i = 0; i < 3; ++i) REQUIRE(c.put_tuning(make_tuning(0, i)));
  for (int i = 0; i < 12; ++i) REQUIRE(c.put_tuning(make_tuning(1, i, old_nvrtc)));
  REQUIRE(c.put_tuning(make_tuning(2, 0, a100)));
  for (int i = 0; i < 2; ++i) REQUIRE(c.put_binary(make_binary(0, i)));
  for (int i = 0; i < 5; ++i) REQUIRE(c.put_binary(make_binary(1, i, old_nvrtc)));

  auto tun = c.load_tunings(h100());
  REQUIRE(tun);
  CHECK(tun->records.size() == 3);
  for (const auto& r : tun->records) CHECK(r.toolchain.nvrtc_version == "13.0");
  CHECK(tun->skipped.count(SkipReason::kNvrtc) == 12);
  CHECK(tun->skipped.count(SkipReason::kGpu) == 1);
  CHECK(tun->skipped.total() == 13);
  CHECK(tun->skipped.message() ==
        "1 record for another GPU, 12 for another NVRTC; run `ffnjit tune` again or `ffnjit cache "
        "gc`");

  auto bin = c.load_binaries(h100());
  REQUIRE(bin);
  CHECK(bin->records.size() == 2);
  CHECK(bin->skipped.count(SkipReason::kNvrtc) == 5);

  // A single lookup reports what it passed over too.
  TuningRecord same_layer_old = make_tuning(0, 0, old_nvrtc);
  REQUIRE(c.put_tuning(same_layer_old));
  auto f = c.find_tuning(h100(), same_layer_old.layer_signature, 8);
  REQUIRE(f);
  REQUIRE(f->record);
  CHECK(f->record->toolchain.nvrtc_version == "13.0");
  CHECK(f->skipped.count(SkipReason::kNvrtc) == 1);
  auto only_old = c.find_tuning(h100(), make_tuning(1, 3).layer_signature, 8);
  REQUIRE(only_old);
  CHECK_FALSE(only_old->record);
  CHECK(only_old->skipped.message() ==
        "1 record for another NVRTC; run `ffnjit tune` again or `ffnjit cache gc`");

  auto fb = c.find_binary(make_binary(1, 0, old_nvrtc).key, h100());
  REQUIRE(fb);
  CHECK_FALSE(fb->record);
  CHECK(fb->skipped.count(SkipReason::kNvrtc) == 1);
  auto ok = c.find_binary(make_binary(0, 0).key, h100());
  REQUIRE(ok);
  CHECK(ok->record);

  // Unknown fields (the CLI without a driver) match anything.
  ToolchainIdentity no_gpu = {"", "", "", "13.0", kGeneratorVersion};
  CHECK(c.load_tunings(no_gpu)->records.size() == 4);  // 3 on the H100, 1 on the A100
}

TEST_CASE("skip report wording") {
  CHECK(format_driver_version(13000) == "13.0");
  CHECK(format_driver_version(12040) == "12.4");
  SkipReport r;
  CHECK(r.message().empty());
  for (int i = 0; i < 12; ++i) r.add(SkipReason::kNvrtc);
  CHECK(r.message() ==
        "12 records for another NVRTC; run `ffnjit tune` again or `ffnjit cache gc`");
  r.add(SkipReason::kDamaged);
  CHECK(r.message() ==
        "12 records for another NVRTC, 1 damaged record; run `ffnjit tune` again or `ffnjit cache "
        "gc`; "
        "`ffnjit cache verify` lists damaged records");
}

TEST_CASE("list filters by layer, arch and name") {
  TempDir t;
  Cache c = open_ok(t.file("cache.db"));
  ToolchainIdentity a100 = {"NVIDIA A100", "sm_80", "580.65", "13.0", kGeneratorVersion};
  for (int i = 0; i < 3; ++i) REQUIRE(c.put_binary(make_binary(0, i)));
  REQUIRE(c.put_binary(make_binary(0, 0, a100)));
  for (int i = 0; i < 3; ++i) REQUIRE(c.put_tuning(make_tuning(0, i)));
  ListFilter f;
  f.arch = "sm_80";
  CHECK(c.list_binaries(f)->size() == 1);
  f = {};
  f.name = "*_w0-1";
  CHECK(c.list_binaries(f)->size() == 1);
  f = {};
  f.layer = "layer2:";
  CHECK(c.list_tunings(f)->size() == 1);
  f.layer = "layer*:w0:*";
  CHECK(c.list_tunings(f)->size() == 3);
  f = {};
  f.name = "ffnjit_up_down_*";
  CHECK(c.list_tunings(f)->size() == 3);
  f.name = "nothing*";
  CHECK(c.list_tunings(f)->empty());
  auto keys = c.keys_with_prefix(make_binary(0, 1).key.substr(0, 10));
  REQUIRE(keys);
  REQUIRE(keys->size() == 1);
  CHECK((*keys)[0] == make_binary(0, 1).key);
}

TEST_CASE("bad files give a clear error and are left byte for byte") {
  TempDir t;
  auto expect_refused = [&](const std::string& path, const std::string& want, OpenOptions o = {}) {
    std::string before = slurp(path);
    auto c = Cache::open(path, o);
    REQUIRE_FALSE(c);
    INFO(c.error().message);
    CHECK(c.error().message.find(want) != std::string::npos);
    CHECK(slurp(path) == before);
    CHECK_FALSE(fs::exists(path + "-journal"));
  };
  std::string text = t.file("notes.txt");
  write_file(text, "these are my notes, not a database\n");
  expect_refused(text, "is not an ffnjit cache (not a SQLite database)");
  expect_refused(text, "is not an ffnjit cache (not a SQLite database)", {.read_only = true});

  std::string shorty = t.file("short.db");
  write_file(shorty, std::string("SQLite format 3\0\x10\x00", 18));
  expect_refused(shorty, "is truncated (18 bytes");

  // A real cache cut short: SQLite notices the header's page count exceeds the file.
  std::string cut = t.file("cut.db");
  {
    Cache c = open_ok(t.file("full.db"));
    for (int i = 0; i < 20; ++i) REQUIRE(c.put_binary(make_binary(0, i, h100(), 20000)));
  }
  raw_sql(t.file("full.db"), "PRAGMA wal_checkpoint(TRUNCATE)");
  std::string full = slurp(t.file("full.db"));
  REQUIRE(full.size() > 100000);
  write_file(cut, full.substr(0, full.size() / 3));
  expect_refused(cut, "is damaged or truncated");

  std::string newer = t.file("newer.db");
  raw_sql(newer,
          "PRAGMA application_id = " + std::to_string(int32_t(kApplicationId)) +
              "; PRAGMA user_version = 7; CREATE TABLE binaries (x); CREATE TABLE tuning (x);");
  expect_refused(newer,
                 "was created by a newer ffnjit (schema v7, this build reads up to v2); "
                 "upgrade ffnjit or use another --cache");

  std::string foreign_app = t.file("foreign-app.db");
  raw_sql(foreign_app,
          "PRAGMA application_id = 1234; CREATE TABLE t (x); INSERT INTO t VALUES (1);");
  expect_refused(foreign_app, "belongs to another application (SQLite application_id 0x000004d2)");

  std::string foreign = t.file("foreign.db");
  raw_sql(foreign,
          "CREATE TABLE photos (x); CREATE TABLE albums (y); INSERT INTO photos VALUES (1);");
  expect_refused(foreign,
                 "is a SQLite database but not an ffnjit cache (it has tables albums, photos)");
  expect_refused(foreign, "not an ffnjit cache", {.read_only = true});

  REQUIRE(fs::create_directory(t.file("dir.db")));
  auto dir = Cache::open(t.file("dir.db"));
  REQUIRE_FALSE(dir);
  CHECK(dir.error().message.find("is a directory") != std::string::npos);
}

TEST_CASE("read-only opens create nothing and refuse writes") {
  TempDir t;
  std::string missing = t.file("sub/cache.db");
  auto c = Cache::open(missing, {.read_only = true});
  REQUIRE_FALSE(c);
  CHECK(c.error().kind == ErrorKind::kNotFound);
  CHECK(c.error().message.find("no ffnjit cache at") != std::string::npos);
  CHECK_FALSE(fs::exists(t.file("sub")));
  auto no_create = Cache::open(missing, {.create_if_missing = false});
  REQUIRE_FALSE(no_create);
  CHECK_FALSE(fs::exists(t.file("sub")));

  std::string path = t.file("cache.db");
  { open_ok(path).put_binary(make_binary(0, 0)).is_ok(); }
  CHECK_FALSE(fs::exists(path + "-wal"));  // the last writer checkpoints and removes it
  std::string before = slurp(path);
  {
    Cache ro = open_ok(path, {.read_only = true});
    CHECK(ro.list_binaries()->size() == 1);
    auto s = ro.put_binary(make_binary(0, 1));
    REQUIRE_FALSE(s);
    CHECK(s.message().find("opened read-only") != std::string::npos);
  }
  CHECK(slurp(path) == before);
  CHECK_FALSE(fs::exists(path + "-wal"));
  CHECK_FALSE(fs::exists(path + "-shm"));
  {
    // While a writer is active too.
    Cache rw = open_ok(path);
    Cache ro = open_ok(path, {.read_only = true});
    REQUIRE(rw.put_binary(make_binary(0, 2)));
    CHECK(ro.list_binaries()->size() == 2);
    CHECK_FALSE(ro.put_binary(make_binary(0, 3)));
    REQUIRE(ro.export_to(t.file("export.db")));
    CHECK_FALSE(ro.put_binary(make_binary(0, 3)));  // still read-only after export
  }
  CHECK_FALSE(fs::exists(path + "-wal"));
  CHECK_FALSE(fs::exists(path + "-shm"));

  // An empty file (e.g. from mktemp) is initialized for writing, refused for reading.
  std::string empty = t.file("empty.db");
  write_file(empty, "");
  auto ro_empty = Cache::open(empty, {.read_only = true});
  REQUIRE_FALSE(ro_empty);
  CHECK(ro_empty.error().message.find("is an empty file") != std::string::npos);
  open_ok(empty);
  CHECK(raw_int(empty, "PRAGMA user_version") == kSchemaVersion);
}

TEST_CASE("export then import into an empty cache round-trips every record byte for byte") {
  TempDir t;
  std::string src = t.file("src.db");
  {
    Cache c = open_ok(src);
    ToolchainIdentity old = h100();
    old.nvrtc_version = "12.8";
    for (int i = 0; i < 40; ++i) REQUIRE(c.put_binary(make_binary(3, i)));
    REQUIRE(c.put_binary(make_binary(4, 0, old)));
    for (int i = 0; i < 10; ++i) REQUIRE(c.put_tuning(make_tuning(3, i)));
    TuningRecord untimed = make_tuning(5, 0);
    untimed.untimed = true;
    untimed.dense_us.reset();
    untimed.winner_us.reset();
    REQUIRE(c.put_tuning(untimed));
    REQUIRE(c.export_to(t.file("shipped.ffnjit")));
    auto again = c.export_to(t.file("shipped.ffnjit"));
    REQUIRE_FALSE(again);
    CHECK(again.message().find("already exists") != std::string::npos);
  }
  CHECK(raw_int(t.file("shipped.ffnjit"), "PRAGMA application_id") == int32_t(kApplicationId));
  CHECK_FALSE(fs::exists(t.file("shipped.ffnjit-wal")));
  std::string dst = t.file("dst.db");
  {
    Cache d = open_ok(dst);
    auto rep = d.merge_from(t.file("shipped.ffnjit"));
    INFO((rep ? "" : rep.error().message));
    REQUIRE(rep);
    CHECK(rep->binaries_added == 41);
    CHECK(rep->tunings_added == 11);
    CHECK(rep->binaries_unverifiable == 0);
    // Importing again changes nothing.
    auto twice = d.merge_from(t.file("shipped.ffnjit"));
    REQUIRE(twice);
    CHECK(twice->binaries_present == 41);
    CHECK(twice->tunings_kept == 11);
  }
  std::string a = dump(src), b = dump(dst);
  CHECK(a.size() > 40 * 200);
  CHECK(a == b);
  CHECK(dump(t.file("shipped.ffnjit")) == a);
}

TEST_CASE("merge: new binaries added, the newer tuning record wins") {
  TempDir t;
  Cache a = open_ok(t.file("a.db"));
  {
    Cache b = open_ok(t.file("b.db"));
    REQUIRE(b.put_binary(make_binary(0, 0)));
    REQUIRE(b.put_binary(make_binary(0, 1)));
    TuningRecord newer = make_tuning(0, 0);
    newer.created_at_ms = 2000;
    newer.winner_us = 5.0;
    REQUIRE(b.put_tuning(newer));
    TuningRecord older = make_tuning(0, 1);
    older.created_at_ms = 1000;
    older.winner_us = 1.0;
    REQUIRE(b.put_tuning(older));
  }
  REQUIRE(a.put_binary(make_binary(0, 0)));
  TuningRecord mine0 = make_tuning(0, 0);
  mine0.created_at_ms = 1500;
  REQUIRE(a.put_tuning(mine0));
  TuningRecord mine1 = make_tuning(0, 1);
  mine1.created_at_ms = 1500;
  mine1.winner_us = 9.0;
  REQUIRE(a.put_tuning(mine1));
  auto rep = a.merge_from(t.file("b.db"));
  REQUIRE(rep);
  CHECK(rep->binaries_added == 1);
  CHECK(rep->binaries_present == 1);
  CHECK(rep->tunings_replaced == 1);
  CHECK(rep->tunings_kept == 1);
  CHECK((*a.get_tuning(mine0.key()))->winner_us == 5.0);
  CHECK((*a.get_tuning(mine1.key()))->winner_us == 9.0);
  auto self = a.merge_from(t.file("a.db"));
  REQUIRE_FALSE(self);
  CHECK(self.error().message.find("into itself") != std::string::npos);
  auto missing = a.merge_from(t.file("nope.db"));
  REQUIRE_FALSE(missing);
  CHECK_FALSE(fs::exists(t.file("nope.db")));
}

TEST_CASE("gc drops unusable and old records") {
  TempDir t;
  Cache c = open_ok(t.file("cache.db"));
  ToolchainIdentity old = h100();
  old.nvrtc_version = "12.4";
  const int64_t day = 86400000;
  const int64_t now = 100 * day;
  for (int i = 0; i < 4; ++i) {
    BinaryRecord b = make_binary(0, i);
    b.created_at_ms = i < 2 ? now - 40 * day : now - day;
    REQUIRE(c.put_binary(b));
  }
  for (int i = 0; i < 3; ++i) REQUIRE(c.put_binary(make_binary(1, i, old)));
  for (int i = 0; i < 2; ++i) REQUIRE(c.put_tuning(make_tuning(1, i, old)));
  REQUIRE(c.put_tuning(make_tuning(0, 0)));

  GcOptions unusable;
  unusable.unusable_for = ToolchainIdentity{"", "", "", "13.0", kGeneratorVersion};
  unusable.now_ms = now;
  auto r = c.gc(unusable);
  REQUIRE(r);
  CHECK(r->binaries_removed == 3);
  CHECK(r->tunings_removed == 2);
  CHECK(r->unusable.count(SkipReason::kNvrtc) == 5);
  CHECK(c.list_binaries()->size() == 4);

  GcOptions aged;
  aged.older_than_days = 30;
  aged.now_ms = now;
  r = c.gc(aged);
  REQUIRE(r);
  CHECK(r->binaries_removed == 2);
  CHECK(r->too_old == 2);
  CHECK(c.list_binaries()->size() == 2);
  CHECK(c.list_tunings()->size() == 1);
}

TEST_CASE("verify checks integrity, completeness and loads") {
  TempDir t;
  std::string path = t.file("cache.db");
  {
    Cache c = open_ok(path);
    for (int i = 0; i < 5; ++i) REQUIRE(c.put_binary(make_binary(0, i)));
    REQUIRE(c.put_tuning(make_tuning(0, 0)));
    int calls = 0;
    VerifyOptions o;
    o.load_check = [&](const BinaryRecord& r) -> Expected<bool> {
      ++calls;
      if (r.kernel_name.find("w0-3") != std::string::npos)
        return Error{ErrorKind::kDriver, "CUDA_ERROR_INVALID_IMAGE"};
      return r.kernel_name.find("w0-4") == std::string::npos;
    };
    auto v = c.verify(o);
    REQUIRE(v);
    CHECK(v->integrity == "ok");
    CHECK(calls == 5);
    CHECK(v->binaries == 5);
    CHECK(v->tunings == 1);
    CHECK(v->cubins_loaded == 3);
    CHECK(v->cubins_not_applicable == 1);
    REQUIRE(v->issues.size() == 1);
    CHECK(v->issues[0].problem == "cubin does not load: CUDA_ERROR_INVALID_IMAGE");
    CHECK(c.verify()->ok());
  }
  // Damage two records behind ffnjit's back, as a hand edit would.
  raw_sql(path,
          "UPDATE binaries SET resources = '{broken' WHERE kernel_name LIKE '%w0-1'; "
          "UPDATE tuning SET bucket_max = 100000;");
  Cache c = open_ok(path);
  auto v = c.verify();
  REQUIRE(v);
  CHECK(v->integrity == "ok");
  REQUIRE(v->issues.size() == 2);
  CHECK(v->issues[0].problem.find("resources is not JSON") != std::string::npos);
  CHECK(v->issues[1].problem.find("key does not match") != std::string::npos);
  auto loaded = c.load_binaries(h100());
  REQUIRE(loaded);
  CHECK(loaded->records.size() == 4);
  CHECK(loaded->skipped.count(SkipReason::kDamaged) == 1);
  auto g = c.gc({});
  REQUIRE(g);
  CHECK(g->binaries_removed == 1);
  CHECK(g->tunings_removed == 1);
  CHECK(c.verify()->ok());
}
