// Where the kernel cache lives: flag > FFNJIT_CACHE > $XDG_CACHE_HOME/ffnjit > ~/.cache/ffnjit.
#include "cache/location.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace ffnjit::cache {

std::string resolve_cache_path(const std::string& flag_value) {
  if (!flag_value.empty()) return flag_value;
  if (const char* env = std::getenv("FFNJIT_CACHE"); env && *env) return env;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/ffnjit/cache.db";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/tmp") + "/.cache/ffnjit/cache.db";
}

Status ensure_cache_dir(const std::string& db_path) {
  size_t slash = db_path.rfind('/');
  if (slash == std::string::npos || slash == 0) return {};
  std::string dir = db_path.substr(0, slash);
  for (size_t i = 1; i <= dir.size(); ++i) {
    if (i < dir.size() && dir[i] != '/') continue;
    std::string part = dir.substr(0, i);
    if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST)
      return io_error("cannot create cache directory " + part + ": " + std::strerror(errno) +
                      "; pass --cache PATH or set FFNJIT_CACHE to a writable location");
  }
  return {};
}

}  // namespace ffnjit::cache
