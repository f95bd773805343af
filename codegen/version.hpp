// Version of the code generator; part of every compiled-kernel cache key.
#pragma once

namespace ffnjit {

// Bump when generated code changes meaning for the same spec (invalidates caches).
inline constexpr const char* kGeneratorVersion = "0.3.1";

}  // namespace ffnjit
