// Where the kernel cache lives, and the owner and mode checks that make that place
// trustworthy: a cache holds cubins the engine's process loads onto the GPU.
#include "cache/location.hpp"

#include "support/env.hpp"

#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace ffnjit::cache {
namespace {

const char* const kElsewhere =
    "; pass --cache PATH or set FFNJIT_CACHE to a file in a directory only you can write";

std::string user_name(uid_t uid) {
  struct passwd pw, *found = nullptr;
  std::vector<char> buf(4096);
  std::string id = "uid " + std::to_string(uid);
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found)
    return std::string(found->pw_name) + " (" + id + ")";
  return id;
}

std::string mode_text(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", unsigned(m & 07777));
  return buf;
}

bool trusted_owner(uid_t owner) {
  return owner == ::geteuid() || owner == 0;
}

std::string owner_problem(const std::string& what, uid_t owner) {
  const uid_t me = ::geteuid();
  return what + " is owned by " + user_name(owner) + ", not by " +
         (me == 0 ? std::string("root") : "you (" + user_name(me) + ") or root");
}

std::string parent_of(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string absolute(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (!::getcwd(cwd, sizeof cwd)) return path;
  return std::string(cwd) + "/" + path;
}

// Prefixes of a path, one per component: "/a/b" -> "/a", "/a/b"; "a/b" -> "a", "a/b".
std::vector<std::string> prefixes(const std::string& path) {
  std::vector<std::string> out;
  for (size_t i = 1; i <= path.size(); ++i)
    if ((i == path.size() || path[i] == '/') && path[i - 1] != '/')
      out.push_back(path.substr(0, i));
  return out;
}

std::string link_target(const std::string& link) {
  char buf[PATH_MAX];
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  return n < 0 ? std::string("?") : std::string(buf, size_t(n));
}

Status dangling(const std::string& link) {
  return user_error(link + " is a symlink to " + link_target(link) +
                    ", which does not exist; ffnjit never creates files through symlinks: create "
                    "the target, remove the link, or pass --cache with the real path");
}

// Symlinks on the literal path (as given) must belong to this user or root: whoever
// owns a link decides where the cache is.
Status check_links(const std::string& abs) {
  for (const auto& p : prefixes(abs)) {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) return {};  // missing from here on: nothing to check
    if (!S_ISLNK(st.st_mode)) continue;
    if (!trusted_owner(st.st_uid))
      return user_error(owner_problem("the symlink " + p, st.st_uid) +
                        ", and it decides where the cache is" + kElsewhere);
    struct stat target;
    if (::stat(p.c_str(), &target) != 0 && errno == ENOENT) return dangling(p);
  }
  return {};
}

// The directory holding the cache and every directory above it (resolved).
Status check_dirs(const std::string& dir_real) {
  struct stat st;
  if (::stat(dir_real.c_str(), &st) != 0)
    return io_error("cannot access the cache directory " + dir_real + ": " + std::strerror(errno) +
                    kElsewhere);
  if (!trusted_owner(st.st_uid))
    return user_error(owner_problem("the cache directory " + dir_real, st.st_uid) + kElsewhere);
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return user_error(
        "the cache directory " + dir_real + " is writable by group or others (mode " +
        mode_text(st.st_mode) +
        "), so another user could plant files there that ffnjit would load "
        "(SQLite keeps its -wal, -shm and -journal files beside the cache); run `chmod go-w " +
        dir_real + "`" + kElsewhere);
  std::vector<std::string> above = prefixes(dir_real);
  if (!above.empty()) above.pop_back();  // dir_real itself, checked above
  above.insert(above.begin(), "/");
  for (const auto& d : above) {
    if (::stat(d.c_str(), &st) != 0)
      return io_error("cannot access " + d + ": " + std::strerror(errno) + kElsewhere);
    if (!trusted_owner(st.st_uid))
      return user_error(
          owner_problem(d + ", above the cache directory " + dir_real + ",", st.st_uid) +
          ", who could replace the cache directory" + kElsewhere);
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
      return user_error(d + ", above the cache directory " + dir_real +
                        ", is writable by group or others without the sticky bit (mode " +
                        mode_text(st.st_mode) +
                        "), so another user could replace the cache directory; run `chmod go-w " +
                        d + "`" + kElsewhere);
  }
  return {};
}

}  // namespace

Expected<std::string> resolve_cache_path(const char* explicit_path) {
  if (explicit_path) {
    if (!*explicit_path)
      return user_error(
          "the cache path is empty; pass --cache PATH (or cache_path) with a file name, or leave "
          "it out "
          "for the default cache");
    return std::string(explicit_path);
  }
  // Empty variables count as unset, as XDG does.
  if (const char* env = env::get(env::kCache)) return std::string(env);
  // XDG: a relative XDG_CACHE_HOME is invalid and ignored.
  if (const char* xdg = env::get(env::kXdgCacheHome); xdg && *xdg == '/')
    return std::string(xdg) + "/ffnjit/cache.db";
  const char* home = env::get(env::kHome);
  if (home && *home == '/') return std::string(home) + "/.cache/ffnjit/cache.db";
  if (home && *home)
    return user_error("HOME is '" + std::string(home) +
                      "', not an absolute path, so there is no default cache location; set HOME, "
                      "XDG_CACHE_HOME or FFNJIT_CACHE, or pass --cache PATH");
  return user_error(
      "no cache location: none of FFNJIT_CACHE, XDG_CACHE_HOME and HOME is set; set one of them or "
      "pass --cache PATH");
}

Status check_location(const std::string& db_path) {
  const std::string abs = absolute(db_path);
  if (Status s = check_links(abs); !s) return s;
  std::string file = abs;
  struct stat st;
  if (::lstat(abs.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    char real[PATH_MAX];
    if (!::realpath(abs.c_str(), real))
      return errno == ENOENT ? dangling(abs)
                             : io_error("cannot resolve " + abs + ": " + std::strerror(errno));
    file = real;
  }
  char dir_real[PATH_MAX];
  const std::string dir = parent_of(file);
  if (!::realpath(dir.c_str(), dir_real)) {
    if (errno == ENOENT)
      return not_found("the cache directory " + dir +
                       " does not exist; run `ffnjit tune` to create the cache, or pass --cache "
                       "PATH or set FFNJIT_CACHE");
    return io_error("cannot resolve the cache directory " + dir + ": " + std::strerror(errno) +
                    kElsewhere);
  }
  if (Status s = check_dirs(dir_real); !s) return s;
  if (::stat(file.c_str(), &st) != 0) return {};  // not there yet: the directory decides
  if (!S_ISREG(st.st_mode))
    return user_error(db_path + " is not a regular file; pass --cache with a file path");
  if (!trusted_owner(st.st_uid))
    return user_error(
        owner_problem("the cache " + db_path, st.st_uid) +
        "; ffnjit only loads code from caches you or root own: move it away, pass --cache PATH, "
        "or `ffnjit cache import` it into your own cache (imports are verified)");
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return user_error("the cache " + db_path + " is writable by group or others (mode " +
                      mode_text(st.st_mode) + "); run `chmod go-w " + db_path + "`" + kElsewhere);
  return {};
}

Status ensure_cache_dir(const std::string& db_path) {
  for (const auto& part : prefixes(parent_of(db_path))) {
    if (::mkdir(part.c_str(), 0700) == 0) continue;
    const int err = errno;
    struct stat st;
    if (err == EEXIST) {
      if (::stat(part.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode)) continue;
        return user_error("cannot create cache directory " + part +
                          ": it exists and is not a directory" + kElsewhere);
      }
      if (::lstat(part.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) return dangling(part);
    }
    return io_error("cannot create cache directory " + part + ": " + std::strerror(err) +
                    "; pass --cache PATH or set FFNJIT_CACHE to a writable location");
  }
  return check_location(db_path);
}

}  // namespace ffnjit::cache
