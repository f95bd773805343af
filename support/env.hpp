// The environment variables the ffnjit libraries read, in one place (the README's
// "Environment variables" table lists them with the flag each mirrors).
#pragma once

#include <cstdlib>

namespace ffnjit::env {

inline constexpr const char* kCache = "FFNJIT_CACHE";             // cache database path (--cache)
inline constexpr const char* kXdgCacheHome = "XDG_CACHE_HOME";    // default cache directory's parent
inline constexpr const char* kHome = "HOME";                      // fallback for XDG_CACHE_HOME
inline constexpr const char* kNoPdl = "FFNJIT_NO_PDL";            // 1: no programmatic dependent launch
inline constexpr const char* kNoSwitch = "FFNJIT_NO_SWITCH";      // 1: captures omit the switch

// The variable's value, or nullptr when it is unset or empty (empty counts as unset).
inline const char* get(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// A flag variable: set, non-empty and not "0".
inline bool flag(const char* name) {
  const char* v = get(name);
  return v && !(v[0] == '0' && v[1] == 0);
}

}  // namespace ffnjit::env
