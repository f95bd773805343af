// Unit tests of import verification (issue 18, item 8): forged records (swapped
// cubins, a 4-byte fake ELF, a forged key, a truncated ELF, another arch's cubin) are
// refused with the record named, nothing imported, both files unchanged; `verify`
// reports them and loads never serve them.
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <functional>

#include "cache/cache.hpp"
#include "cache/elf.hpp"
#include "support/hash.hpp"
#include "support/strings.hpp"
#include "tests/cache/cache_test_util.hpp"

using namespace ffnjit;
using namespace ffnjit::cache;
using namespace ffnjit::cache::testing;
namespace fs = std::filesystem;

namespace {

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

// Writes `r` as a row exactly as given, bypassing every check (what a forger does).
void raw_insert(const std::string& path, const BinaryRecord& r) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(
      sqlite3_prepare_v2(db,
                         "INSERT OR REPLACE INTO binaries (key, kernel_name, lowered_name, arch, "
                         "generator_version, nvrtc_version, cubin, ptx, source, spec, resources, "
                         "options, compile_ms, created_at, templates_hash, cubin_sha256) VALUES "
                         "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                         -1, &st, nullptr) == SQLITE_OK);
  int i = 1;
  for (const std::string* s :
       {&r.key, &r.kernel_name, &r.lowered_name, &r.arch, &r.generator_version, &r.nvrtc_version})
    sqlite3_bind_text(st, i++, s->data(), int(s->size()), SQLITE_TRANSIENT);
  sqlite3_bind_blob(st, i++, r.cubin.data(), int(r.cubin.size()), SQLITE_TRANSIENT);
  const std::string res = r.resources.dump(), opt = r.options.dump();
  for (const std::string* s : {&r.ptx, &r.source, &r.spec, &res, &opt})
    sqlite3_bind_text(st, i++, s->data(), int(s->size()), SQLITE_TRANSIENT);
  sqlite3_bind_double(st, i++, r.compile_ms);
  sqlite3_bind_int64(st, i++, 1000);
  for (const std::string* s : {&r.templates_hash, &r.cubin_sha256})
    sqlite3_bind_text(st, i++, s->data(), int(s->size()), SQLITE_TRANSIENT);
  CHECK(sqlite3_step(st) == SQLITE_DONE);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

std::string hex_of(const std::string& bytes) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) out += d[c >> 4], out += d[c & 15];
  return out;
}

// A tuning record whose winner uses binaries `keys`.
TuningRecord tuning_using(int index, const std::vector<std::string>& keys) {
  TuningRecord t = make_tuning(0, index);
  t.winner["keys"] = keys;
  return t;
}

struct Fixture {
  TempDir t;
  std::string shipped = t.file("shipped.ffnjit"), dst = t.file("dst.db");
  std::vector<BinaryRecord> b;
  Fixture() {
    for (int i = 0; i < 4; ++i) b.push_back(make_binary(0, i));
    {
      auto src = Cache::open(t.file("src.db"));
      REQUIRE(src);
      for (const auto& r : b) REQUIRE(src->put_binary(r));
      REQUIRE(src->put_tuning(tuning_using(0, {b[0].key, b[1].key})));
      REQUIRE(src->put_tuning(tuning_using(1, {b[2].key})));
      REQUIRE(src->export_to(shipped));
    }
    auto d = Cache::open(dst);
    REQUIRE(d);
    REQUIRE(d->put_binary(make_binary(9, 0)));  // something there already
  }
  // A copy of the export, edited by `sql` and then `edit`.
  std::string forged(const std::string& name, const std::string& sql,
                     const std::function<void(const std::string&)>& edit = {}) {
    const std::string path = t.file(name);
    fs::copy_file(shipped, path);
    if (!sql.empty()) raw_sql(path, sql);
    if (edit) edit(path);
    return path;
  }
  // Importing `path` is refused naming `record` and `problem`; nothing changes.
  void refused(const std::string& path, const std::string& record, const std::string& problem,
               MergeOptions o = {}) {
    const std::string before = dump(dst), other_before = dump(path);
    auto d = Cache::open(dst);
    REQUIRE(d);
    auto rep = d->merge_from(path, o);
    REQUIRE_FALSE(rep);
    INFO(rep.error().message);
    CHECK(rep.error().message.find("refusing " + path + ": its " + record) != std::string::npos);
    CHECK(rep.error().message.find(problem) != std::string::npos);
    CHECK(rep.error().message.find("nothing was imported") != std::string::npos);
    CHECK(dump(dst) == before);
    CHECK(dump(path) == other_before);
  }
  std::string bin(int i) const {
    return "binary record " + b[size_t(i)].key.substr(0, 12) + " (" + b[size_t(i)].kernel_name +
           ")";
  }
};

}  // namespace

// SQL that swaps the cubins (and, with `digests`, their SHA-256 columns) of two records.
std::string swap_sql(const BinaryRecord& a, const BinaryRecord& b, bool digests) {
  auto set = [&](const BinaryRecord& to, const BinaryRecord& from) {
    return "UPDATE binaries SET cubin = X'" + hex_of(from.cubin) + "'" +
           (digests ? ", cubin_sha256 = '" + from.cubin_sha256 + "'" : std::string()) +
           " WHERE key = '" + to.key + "'; ";
  };
  return set(a, b) + set(b, a);
}

TEST_CASE("import refuses swapped cubins, with or without their digests") {
  Fixture f;
  const int first = f.b[0].key < f.b[1].key ? 0 : 1;  // records are checked in key order
  f.refused(f.forged("swap.ffnjit", swap_sql(f.b[0], f.b[1], false)), f.bin(first),
            "cubin does not match its SHA-256 digest");
  f.refused(f.forged("swap2.ffnjit", swap_sql(f.b[0], f.b[1], true)), f.bin(first),
            "the cubin is not a well-formed CUDA ELF image: it defines no function " +
                f.b[size_t(first)].lowered_name);
}

TEST_CASE("import refuses a 4-byte fake ELF, under a forged key or its derived one") {
  Fixture f;
  BinaryRecord fake = f.b[3];
  fake.kernel_name = fake.lowered_name = "ffnjit_evil";
  fake.cubin =
      "\x7f"
      "ELF";
  fake.cubin_sha256 = sha256_hex(fake.cubin);
  fake.key = std::string(64, 'e');
  const std::string name = "binary record " + fake.key.substr(0, 12) + " (ffnjit_evil)";
  f.refused(f.forged("fake.ffnjit", "", [&](const std::string& p) { raw_insert(p, fake); }), name,
            "key does not match its content");
  fake.key = binary_key(fake);
  f.refused(f.forged("fake2.ffnjit", "", [&](const std::string& p) { raw_insert(p, fake); }),
            "binary record " + fake.key.substr(0, 12) + " (ffnjit_evil)",
            "the cubin is not a well-formed CUDA ELF image: 4 bytes, shorter than an ELF header");
}

TEST_CASE("import refuses a forged key, a truncated ELF and another arch's cubin") {
  Fixture f;
  const std::string forged_key(64, 'a');
  f.refused(f.forged("key.ffnjit", "UPDATE binaries SET key = '" + forged_key + "' WHERE key = '" +
                                       f.b[2].key + "'"),
            "binary record " + forged_key.substr(0, 12), "key does not match its content");

  const std::string half = f.b[1].cubin.substr(0, f.b[1].cubin.size() / 2);
  f.refused(f.forged("cut.ffnjit", "UPDATE binaries SET cubin = X'" + hex_of(half) +
                                       "', cubin_sha256 = '" + sha256_hex(half) +
                                       "' WHERE key = '" + f.b[1].key + "'"),
            f.bin(1), "section headers lie outside the image");

  const std::string sm80 = make_cubin("sm_80", f.b[0].lowered_name, "payload");
  f.refused(f.forged("arch.ffnjit", "UPDATE binaries SET cubin = X'" + hex_of(sm80) +
                                        "', cubin_sha256 = '" + sha256_hex(sm80) +
                                        "' WHERE key = '" + f.b[0].key + "'"),
            f.bin(0), "it is built for sm_80 (e_flags 0x6005004), the record says sm_90a");
}

TEST_CASE("import refuses damaged tuning records and malformed winner keys") {
  Fixture f;
  const std::string tk = tuning_using(0, {}).key();
  f.refused(
      f.forged("winner.ffnjit", "UPDATE tuning SET winner = '{oops' WHERE key = '" + tk + "'"),
      "tuning record " + tk.substr(0, 12), "is damaged");
  f.refused(
      f.forged(
          "keys.ffnjit",
          "UPDATE tuning SET winner = json_set(winner, '$.keys', json_array('x')) WHERE key = '" +
              tk + "'"),
      "tuning record " + tk.substr(0, 12), "winner's \"keys\" is not an array of binary keys");
}

TEST_CASE("import with a rebuild check: mismatches refuse, unverifiable records stay out") {
  Fixture f;
  MergeOptions mismatch;
  mismatch.check_binary = [&](const BinaryRecord& r) -> Expected<bool> {
    if (r.key == f.b[2].key)
      return Error{ErrorKind::kInvalidArgument, "its cubin is not what NVRTC builds"};
    return true;
  };
  f.refused(f.shipped, f.bin(2), "fails the rebuild: its cubin is not what NVRTC builds", mismatch);

  MergeOptions partial;
  partial.check_binary = [&](const BinaryRecord& r) -> Expected<bool> {
    return r.key != f.b[0].key;
  };
  auto d = Cache::open(f.dst);
  REQUIRE(d);
  auto rep = d->merge_from(f.shipped, partial);
  INFO((rep ? "" : rep.error().message));
  REQUIRE(rep);
  CHECK(rep->binaries_rebuilt == 3);
  CHECK(rep->binaries_unverifiable == 1);
  CHECK(rep->binaries_added == 3);
  CHECK(rep->tunings_unverifiable == 1);  // its winner uses b[0]
  CHECK(rep->tunings_added == 1);
  CHECK_FALSE(*d->get_binary(f.b[0].key));
  CHECK(*d->get_binary(f.b[1].key));
}

TEST_CASE("a tuning record whose winner's binaries are nowhere is imported and reported") {
  Fixture f;
  const std::string path =
      f.forged("dangling.ffnjit", "DELETE FROM binaries WHERE key = '" + f.b[2].key + "'");
  auto d = Cache::open(f.dst);
  REQUIRE(d);
  auto rep = d->merge_from(path);
  REQUIRE(rep);
  CHECK(rep->tunings_added == 2);
  CHECK(rep->tunings_missing_binaries == 1);
  auto v = d->verify();
  REQUIRE(v);
  CHECK(v->ok());
  REQUIRE(v->missing_binaries.size() == 1);
  CHECK(v->missing_binaries[0].problem.find("which is not in the cache") != std::string::npos);
}

TEST_CASE("verify reports swapped cubins and fake ELFs; loads never serve them") {
  Fixture f;
  const std::string path = f.t.file("local.db");
  {
    auto c = Cache::open(path);
    REQUIRE(c);
    for (const auto& r : f.b) REQUIRE(c->put_binary(r));
    REQUIRE(c->put_tuning(tuning_using(0, {f.b[0].key})));
  }
  const std::string k0 = f.b[0].key, k1 = f.b[1].key;
  raw_sql(path, swap_sql(f.b[0], f.b[1], true) +
                    "UPDATE binaries SET cubin = X'7f454c46', cubin_sha256 = '" +
                    sha256_hex("\x7f"
                               "ELF") +
                    "' WHERE key = '" + f.b[2].key + "'");
  auto c = Cache::open(path);
  REQUIRE(c);
  auto v = c->verify();
  REQUIRE(v);
  CHECK_FALSE(v->ok());
  std::string all;
  for (const auto& i : v->issues) all += i.key.substr(0, 12) + ": " + i.problem + "\n";
  INFO(all);
  CHECK(v->issues.size() == 4);  // b0, b1 swapped, b2 fake, and the tuning record using b0
  for (const auto& k : {k0, k1})
    CHECK(all.find(k.substr(0, 12) +
                   ": the cubin is not a well-formed CUDA ELF image: it defines no function") !=
          std::string::npos);
  CHECK(all.find(f.b[2].key.substr(0, 12) +
                 ": the cubin is not a well-formed CUDA ELF image: 4 bytes") != std::string::npos);
  CHECK(all.find("its winner uses binary " + k0.substr(0, 12) + ", which is damaged") !=
        std::string::npos);
  for (int i = 0; i < 3; ++i) {
    auto found = c->find_binary(f.b[size_t(i)].key, h100());
    REQUIRE(found);
    CHECK_FALSE(found->record);
    CHECK(found->skipped.count(SkipReason::kDamaged) == 1);
  }
  auto loaded = c->load_binaries(h100());
  REQUIRE(loaded);
  CHECK(loaded->records.size() == 1);
  // Storing the sound record again repairs the damaged row under its key.
  REQUIRE(c->put_binary(f.b[2]));
  CHECK(c->find_binary(f.b[2].key, h100())->record);
}

TEST_CASE("check_cubin: header, arch in both e_flags layouts, bounds, symbol") {
  const std::string good = make_cubin("sm_90a", "ffnjit_k", std::string(100, 'x'));
  CHECK(check_cubin(good, "sm_90a", "ffnjit_k"));
  CHECK(check_cubin(good, "sm_90", "ffnjit_k"));
  CHECK(check_cubin(make_cubin("sm_89", "k", "p"), "sm_89", "k"));
  CHECK_FALSE(check_cubin(good, "sm_80", "ffnjit_k"));
  CHECK(check_cubin(good, "sm_90a", "ffnjit_other")
            .message()
            .find("defines no function ffnjit_other") != std::string::npos);
  // The CUDA 12 layout: ELF ABI version 7, SM number in e_flags bits 0-7.
  std::string v7 = good;
  v7[8] = 7;
  v7[48] = char(90), v7[49] = 0;
  CHECK(check_cubin(v7, "sm_90a", "ffnjit_k"));
  auto broken = [&](size_t off, char value) {
    std::string b = good;
    b[off] = value;
    return check_cubin(b, "sm_90a", "ffnjit_k").is_ok();
  };
  CHECK_FALSE(broken(4, 1));            // 32-bit
  CHECK_FALSE(broken(5, 2));            // big-endian
  CHECK_FALSE(broken(18, 62));          // x86-64, not EM_CUDA
  CHECK_FALSE(broken(16, 1));           // relocatable
  CHECK_FALSE(broken(47, 0x7f));        // e_shoff far outside
  CHECK_FALSE(broken(60, char(0xff)));  // e_shnum beyond the image
  for (size_t n = 0; n < good.size(); n += 7)
    CHECK_FALSE(check_cubin(good.substr(0, n), "sm_90a", "ffnjit_k"));
  CHECK(arch_sm("sm_90a") == 90);
  CHECK(arch_sm("sm_100f") == 100);
  CHECK(arch_sm("compute_90") == -1);
  CHECK(arch_sm("sm_") == -1);
  CHECK(arch_sm("sm_90ab") == -1);
}
