// Where the kernel cache lives: flag > FFNJIT_CACHE > $XDG_CACHE_HOME/ffnjit > ~/.cache/ffnjit.
#pragma once

#include <string>

#include "support/status.hpp"

namespace ffnjit::cache {

// The database path to use. `flag_value` is the --cache flag ("" when absent).
// Reads FFNJIT_CACHE, XDG_CACHE_HOME and HOME; never touches the file system.
std::string resolve_cache_path(const std::string& flag_value = "");

// Creates the directory holding `db_path` (mode 0700, parents as needed).
Status ensure_cache_dir(const std::string& db_path);

}  // namespace ffnjit::cache
