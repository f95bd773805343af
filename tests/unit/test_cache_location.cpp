// Unit tests of where the cache lives and whether that place is trusted (issue 18,
// items 7 and 9): the documented precedence, no /tmp fallback, an explicit empty path
// refused, directories others can write refused, symlinks to nothing never followed.
// Tests needing other users (chown) are in test_cache_owners.cpp.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <optional>

#include "cache/cache.hpp"
#include "cache/location.hpp"
#include "tests/cache/cache_test_util.hpp"

using namespace ffnjit;
using namespace ffnjit::cache;
using namespace ffnjit::cache::testing;
namespace fs = std::filesystem;

namespace {

// Sets (or, with nullopt, unsets) environment variables for one scope.
struct Env {
  std::map<std::string, std::optional<std::string>> saved;
  Env(std::initializer_list<std::pair<const char*, std::optional<std::string>>> vars) {
    for (const auto& [name, value] : vars) {
      const char* old = std::getenv(name);
      saved[name] = old ? std::optional<std::string>(old) : std::nullopt;
      if (value)
        ::setenv(name, value->c_str(), 1);
      else
        ::unsetenv(name);
    }
  }
  ~Env() {
    for (const auto& [name, value] : saved)
      if (value)
        ::setenv(name.c_str(), value->c_str(), 1);
      else
        ::unsetenv(name.c_str());
  }
};

std::string resolved(const char* flag) {
  auto p = resolve_cache_path(flag);
  return p ? *p : "error: " + p.error().message;
}

std::string refusal(const std::string& path, OpenOptions o = {}) {
  auto c = Cache::open(path, o);
  return c ? std::string("opened") : c.error().message;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("cache path precedence: flag > FFNJIT_CACHE > XDG_CACHE_HOME > HOME, no /tmp fallback") {
  Env env{{"FFNJIT_CACHE", "/f/cache.db"}, {"XDG_CACHE_HOME", "/x"}, {"HOME", "/h"}};
  CHECK(resolved("flag.db") == "flag.db");
  CHECK(resolved(nullptr) == "/f/cache.db");
  {
    Env e{{"FFNJIT_CACHE", std::nullopt}};
    CHECK(resolved(nullptr) == "/x/ffnjit/cache.db");
    Env empty{{"FFNJIT_CACHE", ""}};  // an empty variable counts as unset
    CHECK(resolved(nullptr) == "/x/ffnjit/cache.db");
  }
  {
    Env e{{"FFNJIT_CACHE", std::nullopt}, {"XDG_CACHE_HOME", "relative"}};  // invalid: ignored
    CHECK(resolved(nullptr) == "/h/.cache/ffnjit/cache.db");
  }
  {
    Env e{{"FFNJIT_CACHE", std::nullopt}, {"XDG_CACHE_HOME", std::nullopt}, {"HOME", std::nullopt}};
    const std::string r = resolved(nullptr);
    CHECK(r ==
          "error: no cache location: none of FFNJIT_CACHE, XDG_CACHE_HOME and HOME is set; set one "
          "of them or pass --cache PATH");
    CHECK_FALSE(has(r, "/tmp"));
  }
  {
    Env e{{"FFNJIT_CACHE", std::nullopt}, {"XDG_CACHE_HOME", std::nullopt}, {"HOME", "rel"}};
    CHECK(has(resolved(nullptr), "HOME is 'rel', not an absolute path"));
  }
}

TEST_CASE("an explicit empty cache path is an error, never the default cache") {
  Env env{{"FFNJIT_CACHE", "/should/not/be/used.db"}};
  const std::string r = resolved("");
  CHECK(
      has(r, "error: the cache path is empty; pass --cache PATH (or cache_path) with a file name"));
}

TEST_CASE("a cache directory writable by group or others is refused, nothing created") {
  TempDir t;
  for (mode_t mode : {0777, 0770, 0722}) {
    INFO("mode " << std::oct << mode);
    const std::string dir = t.file("shared"), path = dir + "/cache.db";
    fs::remove_all(dir);
    REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
    REQUIRE(::chmod(dir.c_str(), mode) == 0);
    const std::string msg = refusal(path);
    CHECK(has(msg, "the cache directory " + dir + " is writable by group or others"));
    CHECK(has(msg, "run `chmod go-w " + dir + "`"));
    CHECK(fs::is_empty(dir));
    // An existing cache there is refused for reading too: others could have planted it.
    REQUIRE(::chmod(dir.c_str(), 0700) == 0);
    REQUIRE(Cache::open(path));
    REQUIRE(::chmod(dir.c_str(), mode) == 0);
    CHECK(has(refusal(path, {.read_only = true}), "is writable by group or others"));
    ::chmod(dir.c_str(), 0700);
  }
  // Sticky does not help the cache's own directory (side files could be planted)...
  const std::string sticky = t.file("sticky");
  REQUIRE(::mkdir(sticky.c_str(), 0700) == 0);
  REQUIRE(::chmod(sticky.c_str(), 01777) == 0);
  CHECK(has(refusal(sticky + "/cache.db"), "is writable by group or others (mode 1777)"));
  // ... but a private directory inside a sticky one (as in /tmp) is fine.
  CHECK(refusal(sticky + "/mine/cache.db") == "opened");
  CHECK((fs::status(sticky + "/mine").permissions() & fs::perms::all) == fs::perms::owner_all);
}

TEST_CASE("a directory above the cache writable by others without the sticky bit is refused") {
  TempDir t;
  const std::string open_dir = t.file("open");
  REQUIRE(::mkdir(open_dir.c_str(), 0700) == 0);
  REQUIRE(::mkdir((open_dir + "/private").c_str(), 0700) == 0);
  REQUIRE(::chmod(open_dir.c_str(), 0777) == 0);
  const std::string msg = refusal(open_dir + "/private/cache.db");
  CHECK(
      has(msg, open_dir + ", above the cache directory " + open_dir +
                   "/private, is writable by group or others without the sticky bit (mode 0777)"));
  CHECK(fs::is_empty(open_dir + "/private"));
}

TEST_CASE("a cache file writable by group or others is refused") {
  TempDir t;
  const std::string path = t.file("cache.db");
  REQUIRE(Cache::open(path));
  REQUIRE(::chmod(path.c_str(), 0666) == 0);
  CHECK(has(refusal(path),
            "the cache " + path + " is writable by group or others (mode 0666); run `chmod go-w"));
  CHECK(has(refusal(path, {.read_only = true}), "is writable by group or others"));
  // As the other file of an import it is only read and verified: fine.
  auto mine = Cache::open(t.file("mine.db"));
  REQUIRE(mine);
  CHECK(mine->merge_from(path));
}

TEST_CASE("symlinks to nothing are never followed to create a cache") {
  TempDir t;
  REQUIRE(::mkdir(t.file("elsewhere").c_str(), 0700) == 0);
  const std::string target = t.file("elsewhere/target.db"), link = t.file("cache.db");
  REQUIRE(::symlink(target.c_str(), link.c_str()) == 0);
  for (OpenOptions o : {OpenOptions{}, OpenOptions{.read_only = true}}) {
    const std::string msg = refusal(link, o);
    CHECK(has(msg, link + " is a symlink to " + target +
                       ", which does not exist; ffnjit never creates files through symlinks"));
    CHECK_FALSE(fs::exists(target));
  }
  // A directory on the way that is a symlink to nothing: not created either.
  const std::string dir_link = t.file("dirlink"), missing_dir = t.file("missing");
  REQUIRE(::symlink(missing_dir.c_str(), dir_link.c_str()) == 0);
  CHECK(has(refusal(dir_link + "/sub/cache.db"),
            dir_link + " is a symlink to " + missing_dir + ", which does not exist"));
  CHECK(has(ensure_cache_dir(dir_link + "/sub/cache.db").message(), "which does not exist"));
  CHECK_FALSE(fs::exists(missing_dir));
  // A symlink to an existing cache is followed (and the target's directory checked).
  REQUIRE(Cache::open(target));
  auto via = Cache::open(link);
  INFO((via ? "" : via.error().message));
  REQUIRE(via);
  REQUIRE(via->put_binary(make_binary(0, 0)));
  CHECK_FALSE(fs::exists(t.file("cache.db-wal")));  // side files sit beside the target
}
