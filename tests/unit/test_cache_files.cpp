// Unit tests of how the cache opens files (issue 18, item 6): a file that is not
// verifiably ours never reaches SQLite, and what is only read is never modified: a
// foreign WAL database with its -wal, a hot rollback journal, a newer-schema cache
// with its -wal, and a 0444 cache all stay byte for byte, with no side file created.
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>

#include "cache/cache.hpp"
#include "cache/sqlite_header.hpp"
#include "support/strings.hpp"
#include "tests/cache/cache_test_util.hpp"

using namespace ffnjit;
using namespace ffnjit::cache;
using namespace ffnjit::cache::testing;
namespace fs = std::filesystem;

namespace {

// The bytes of a database and each of its side files ("" when absent), to compare
// before and after.
std::map<std::string, std::string> files_of(const std::string& db) {
  std::map<std::string, std::string> out;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::string bytes = "(absent)";
    if (fs::exists(db + suffix)) read_file(db + suffix, &bytes);
    out[suffix] = bytes;
  }
  return out;
}

void copy(const std::string& from, const std::string& to) {
  fs::copy_file(from, to, fs::copy_options::overwrite_existing);
}

// A raw SQLite connection kept open, so its -wal or -journal can be copied as a
// crash would leave them.
struct Raw {
  sqlite3* db = nullptr;
  explicit Raw(const std::string& path) { REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK); }
  ~Raw() { sqlite3_close(db); }
  void exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    INFO((err ? err : ""));
    sqlite3_free(err);
    REQUIRE(rc == SQLITE_OK);
  }
};

// Every way of opening: the user's cache read-only and read-write, and as the other
// file of an import. Each must refuse `path` with `want` and leave every file as it was.
void refused_untouched(const std::string& path, const std::string& want) {
  const auto before = files_of(path);
  for (OpenOptions o : {OpenOptions{.read_only = true}, OpenOptions{},
                        OpenOptions{.read_only = true, .untrusted = true}}) {
    auto c = Cache::open(path, o);
    REQUIRE_FALSE(c);
    INFO(c.error().message);
    CHECK(c.error().message.find(want) != std::string::npos);
    if (want.find("newer ffnjit") == std::string::npos)  // that one says to upgrade instead
      CHECK(c.error().message.find("ffnjit leaves it untouched") != std::string::npos);
    const auto after = files_of(path);
    for (const auto& [suffix, bytes] : before) {
      INFO("file " << path << suffix);
      CHECK(after.at(suffix) == bytes);
    }
  }
  // And through import into a cache of ours.
  TempDir other;
  auto mine = Cache::open(other.file("mine.db"));
  REQUIRE(mine);
  auto rep = mine->merge_from(path);
  REQUIRE_FALSE(rep);
  CHECK(rep.error().message.find(want) != std::string::npos);
  CHECK(files_of(path) == before);
}

}  // namespace

TEST_CASE("another application's WAL database with its -wal is refused untouched") {
  TempDir t;
  const std::string live = t.file("live.db"), copy_db = t.file("app.db");
  {
    Raw app(live);
    app.exec("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;");
    app.exec("PRAGMA application_id = 1234; CREATE TABLE notes (x); INSERT INTO notes VALUES (1);");
    copy(live, copy_db);
    copy(live + "-wal", copy_db + "-wal");  // as if the application had crashed
  }
  // The main file alone does not say whose it is yet; its -wal's newest page 1 does.
  std::string main_bytes;
  read_file(copy_db, &main_bytes);
  auto main_header = parse_sqlite_header(main_bytes);
  if (main_header) CHECK(main_header->application_id == 0);
  auto state = read_file_state(copy_db);
  REQUIRE(state);
  REQUIRE(state->header);
  CHECK(state->header_from_wal);
  CHECK(state->header->application_id == 1234);
  refused_untouched(copy_db, "belongs to another application (SQLite application_id 0x000004d2)");
  CHECK_FALSE(fs::exists(copy_db + "-shm"));

  // Without an application_id: its pending -wal says it is in use by someone else.
  const std::string live2 = t.file("live2.db"), plain = t.file("plain.db");
  {
    Raw app(live2);
    app.exec("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;");
    app.exec("CREATE TABLE photos (x); INSERT INTO photos VALUES (1);");
    copy(live2, plain);
    copy(live2 + "-wal", plain + "-wal");
  }
  refused_untouched(plain, "without ffnjit's application_id and with a pending " + plain + "-wal");
}

TEST_CASE("a hot rollback journal of another application is never rolled back") {
  TempDir t;
  const std::string live = t.file("live.db"), hot = t.file("hot.db");
  {
    Raw app(live);
    app.exec(
        "CREATE TABLE t (x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
        "WHERE i < 2000) INSERT INTO t SELECT randomblob(200) FROM n;");
    // A big update with a tiny page cache spills into the main file mid-transaction.
    app.exec("PRAGMA cache_size = 2; BEGIN; UPDATE t SET x = randomblob(200);");
    copy(live, hot);
    copy(live + "-journal", hot + "-journal");  // the crash: main half-written, journal hot
    app.exec("ROLLBACK");
  }
  REQUIRE(fs::file_size(hot + "-journal") > 0);
  refused_untouched(hot, "with a pending " + hot + "-journal");

  // With an application_id of its own, refused for that (from the header bytes).
  const std::string live2 = t.file("live2.db"), hot2 = t.file("hot2.db");
  {
    Raw app(live2);
    app.exec(
        "PRAGMA application_id = 77; CREATE TABLE t (x); WITH RECURSIVE n(i) AS (SELECT 1 "
        "UNION ALL SELECT i + 1 FROM n WHERE i < 2000) INSERT INTO t SELECT randomblob(200) "
        "FROM n;");
    app.exec("PRAGMA cache_size = 2; BEGIN; UPDATE t SET x = randomblob(200);");
    copy(live2, hot2);
    copy(live2 + "-journal", hot2 + "-journal");
    app.exec("ROLLBACK");
  }
  refused_untouched(hot2, "belongs to another application (SQLite application_id 0x0000004d)");
}

TEST_CASE("a cache of a newer schema, its -wal not yet checkpointed, is refused untouched") {
  TempDir t;
  const std::string live = t.file("live.db"), newer = t.file("newer.db");
  { REQUIRE(Cache::open(live)); }
  {
    Raw later(live);  // a newer ffnjit migrating the file: the change waits in -wal
    later.exec("PRAGMA wal_autocheckpoint = 0; PRAGMA user_version = 9; CREATE TABLE v9 (x);");
    copy(live, newer);
    copy(live + "-wal", newer + "-wal");
  }
  std::string main_bytes;
  read_file(newer, &main_bytes);
  REQUIRE(parse_sqlite_header(main_bytes));
  CHECK(parse_sqlite_header(main_bytes)->user_version == uint32_t(kSchemaVersion));
  refused_untouched(newer, "was created by a newer ffnjit (schema v9, this build reads up to v" +
                               std::to_string(kSchemaVersion) + ")");
}

TEST_CASE("a 0444 cache is read without side files and refused for writing up front") {
  TempDir t;
  const std::string path = t.file("cache.db");
  {
    Cache c = std::move(*Cache::open(path));
    for (int i = 0; i < 5; ++i) REQUIRE(c.put_binary(make_binary(0, i)));
    REQUIRE(c.put_tuning(make_tuning(0, 0)));
  }
  REQUIRE_FALSE(fs::exists(path + "-wal"));
  REQUIRE(::chmod(path.c_str(), 0444) == 0);
  const auto before = files_of(path);
  {
    auto ro = Cache::open(path, {.read_only = true});
    INFO((ro ? "" : ro.error().message));
    REQUIRE(ro);
    CHECK(ro->list_binaries()->size() == 5);
    CHECK(ro->verify()->ok());
    CHECK_FALSE(fs::exists(path + "-wal"));
    CHECK_FALSE(fs::exists(path + "-shm"));
  }
  CHECK(files_of(path) == before);
  // Writing is refused when opening (before a tune compiles anything), even for root.
  auto rw = Cache::open(path);
  REQUIRE_FALSE(rw);
  CHECK(rw.error().message.find("is read-only; make it writable (`chmod u+w " + path + "`)") !=
        std::string::npos);
  CHECK(files_of(path) == before);
  // After the owner makes it writable, writing works (no stale 0444 -shm in the way).
  REQUIRE(::chmod(path.c_str(), 0644) == 0);
  auto again = Cache::open(path);
  INFO((again ? "" : again.error().message));
  REQUIRE(again);
  CHECK(again->put_binary(make_binary(0, 9)));
}

TEST_CASE(
    "a read-only cache whose writer has commits waiting in -wal reads them, creating nothing") {
  TempDir t;
  const std::string path = t.file("cache.db");
  Cache writer = std::move(*Cache::open(path));
  Raw hold(path);  // keeps the -wal from being checkpointed away when `writer` commits
  hold.exec("PRAGMA wal_autocheckpoint = 0");
  REQUIRE(writer.put_binary(make_binary(0, 1)));
  REQUIRE(fs::file_size(path + "-wal") > 0);
  REQUIRE(::chmod(path.c_str(), 0444) == 0);
  std::string main_before;
  read_file(path, &main_before);
  {
    auto ro = Cache::open(path, {.read_only = true});
    INFO((ro ? "" : ro.error().message));
    REQUIRE(ro);
    CHECK(ro->list_binaries()->size() == 1);
  }
  std::string main_after;
  read_file(path, &main_after);
  CHECK(main_after == main_before);
  CHECK_FALSE(fs::exists(path + "-journal"));
  ::chmod(path.c_str(), 0644);
}

TEST_CASE("a new cache appears complete: its header says ffnjit from the first byte on disk") {
  TempDir t;
  const std::string path = t.file("new.db");
  REQUIRE(Cache::open(path));
  std::string bytes;
  read_file(path, &bytes);
  auto h = parse_sqlite_header(bytes);
  REQUIRE(h);
  CHECK(h->application_id == kApplicationId);
  CHECK(h->user_version == uint32_t(kSchemaVersion));
  // No temporary file is left beside it.
  int entries = 0;
  for (const auto& e : fs::directory_iterator(t.path)) entries += e.path().filename() != "new.db";
  CHECK(entries == 0);
}

TEST_CASE("WAL page-1 reader: only committed, checksummed frames count") {
  TempDir t;
  const std::string live = t.file("live.db");
  Raw app(live);
  app.exec("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;");
  app.exec("PRAGMA application_id = 5; CREATE TABLE a (x);");
  app.exec("PRAGMA application_id = 6;");
  std::string wal;
  read_file(live + "-wal", &wal);
  auto page1 = wal_page1(wal);
  REQUIRE(page1);
  CHECK(parse_sqlite_header(*page1)->application_id == 6);  // the newest commit
  // A flipped byte in the last frame ends the log before it: the previous commit counts.
  std::string bad = wal;
  bad[bad.size() - 10] ^= 1;
  auto older = wal_page1(bad);
  REQUIRE(older);
  CHECK(parse_sqlite_header(*older)->application_id == 5);
  CHECK_FALSE(wal_page1(wal.substr(0, 31)));
  CHECK_FALSE(wal_page1(std::string(4096, 'x')));
}
