// Unit tests of the cache's owner checks (issue 18, item 7): a cache, its directory, a
// directory above it or a symlink on the way owned by another user is refused, also
// for root (a cache planted by `nobody` was used by root). Needs root to chown files
// to `nobody`; prints [SKIP] otherwise.
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>

#include "cache/cache.hpp"
#include "cache/location.hpp"
#include "support/strings.hpp"
#include "tests/cache/cache_test_util.hpp"

using namespace ffnjit;
using namespace ffnjit::cache;
using namespace ffnjit::cache::testing;
namespace fs = std::filesystem;

namespace {

uid_t nobody() {
  struct passwd* pw = ::getpwnam("nobody");
  return pw ? pw->pw_uid : 65534;
}

bool can_chown() {
  if (::geteuid() == 0) return true;
  static bool said = false;
  if (!said) std::printf("[SKIP] owner checks need root (to chown test files to nobody)\n");
  said = true;
  return false;
}

std::string refusal(const std::string& path, OpenOptions o = {}) {
  auto c = Cache::open(path, o);
  return c ? std::string("opened") : c.error().message;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("a cache file owned by another user is refused, even by root") {
  if (!can_chown()) return;
  TempDir t;
  const std::string path = t.file("cache.db");
  {
    Cache c = std::move(*Cache::open(path));
    REQUIRE(c.put_binary(make_binary(0, 0)));
  }
  REQUIRE(::chown(path.c_str(), nobody(), nobody()) == 0);
  std::string before;
  read_file(path, &before);
  for (OpenOptions o : {OpenOptions{}, OpenOptions{.read_only = true}}) {
    const std::string msg = refusal(path, o);
    CHECK(has(msg, "the cache " + path + " is owned by nobody (uid " + std::to_string(nobody()) +
                       "), not by root"));
    CHECK(has(msg, "`ffnjit cache import` it into your own cache (imports are verified)"));
  }
  std::string after;
  read_file(path, &after);
  CHECK(after == before);
  // Importing it is the way: it is only read, and verified.
  auto mine = Cache::open(t.file("mine.db"));
  REQUIRE(mine);
  auto rep = mine->merge_from(path);
  INFO((rep ? "" : rep.error().message));
  REQUIRE(rep);
  CHECK(rep->binaries_added == 1);
}

TEST_CASE("a cache directory or a directory above it owned by another user is refused") {
  if (!can_chown()) return;
  TempDir t;
  const std::string theirs = t.file("theirs");
  REQUIRE(::mkdir(theirs.c_str(), 0755) == 0);
  REQUIRE(::chown(theirs.c_str(), nobody(), nobody()) == 0);
  CHECK(
      has(refusal(theirs + "/cache.db"), "the cache directory " + theirs + " is owned by nobody"));
  CHECK(fs::is_empty(theirs));
  // The default location under a HOME whose .cache was made by someone else.
  REQUIRE(::mkdir((theirs + "/mine").c_str(), 0700) == 0);
  CHECK(has(refusal(theirs + "/mine/cache.db"),
            theirs + ", above the cache directory " + theirs + "/mine, is owned by nobody"));
  CHECK(fs::is_empty(theirs + "/mine"));
}

TEST_CASE("a symlink on the way owned by another user is refused") {
  if (!can_chown()) return;
  TempDir t;
  REQUIRE(::mkdir(t.file("real").c_str(), 0700) == 0);
  const std::string link = t.file("link");
  REQUIRE(::symlink(t.file("real").c_str(), link.c_str()) == 0);
  REQUIRE(::lchown(link.c_str(), nobody(), nobody()) == 0);
  CHECK(has(refusal(link + "/cache.db"), "the symlink " + link + " is owned by nobody"));
  CHECK(fs::is_empty(t.file("real")));
}
