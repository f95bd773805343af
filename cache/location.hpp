// Where the kernel cache lives (flag > FFNJIT_CACHE > $XDG_CACHE_HOME/ffnjit > ~/.cache/ffnjit)
// and whether that place can be trusted: the cache holds code that runs on the GPU.
#pragma once

#include <string>

#include "support/status.hpp"

namespace ffnjit::cache {

// The database path to use. `explicit_path` is the --cache flag or the C API's
// cache_path; nullptr when not given. An explicit "" is an error (never the default
// cache). Otherwise FFNJIT_CACHE, then $XDG_CACHE_HOME/ffnjit/cache.db (an absolute
// XDG_CACHE_HOME only), then $HOME/.cache/ffnjit/cache.db; with none of them set it is
// an error naming them (there is no /tmp fallback). Never touches the file system.
Expected<std::string> resolve_cache_path(const char* explicit_path);

// Creates the directory holding `db_path` (mode 0700, parents as needed), never
// through a symlink to a missing directory, then checks the location as
// check_location does.
Status ensure_cache_dir(const std::string& db_path);

// Refuses (with the fix) a cache location others could tamper with:
//  - the directory holding the file must be owned by this user or root and not be
//    writable by group or others (sticky or not: SQLite creates PATH-wal, -shm and
//    -journal there, and a planted one would be read as part of the cache);
//  - every directory above it must be owned by this user or root and be writable by
//    group or others only with the sticky bit (as /tmp is);
//  - the file, when it exists, must be a regular file owned by this user or root and
//    not writable by group or others;
//  - a symlink on the way (the file or a directory) must be owned by this user or root;
//    a symlink to nothing is refused (ffnjit never creates a file through one).
// Checks the directories after resolving symlinks. A missing directory is kNotFound.
Status check_location(const std::string& db_path);

}  // namespace ffnjit::cache
