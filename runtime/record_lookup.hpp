// The tuning records of a cache as a runtime::Layer reads them: the choice stored for
// (signature, runtime bucket) on this toolchain, rebuilt for the layer's shape. The C
// API's contexts and `ffnjit bench --checkpoint` serve through this one lookup.
#pragma once

#include <mutex>
#include <string>

#include "cache/cache.hpp"
#include "runtime/layer.hpp"

namespace ffnjit {

struct RecordLookupState {
  cache::Cache* cache = nullptr;
  std::mutex* mu = nullptr;  // guards `cache` and `skipped`
  cache::ToolchainIdentity identity;
  Arch arch = Arch::kSm90a;
  std::string skipped;  // the last "records for another toolchain" report
};

// A record serves a runtime bucket only if its bucket covers all of it.
// `state` must outlive the returned lookup.
ChoiceLookup record_lookup(RecordLookupState& state);

}  // namespace ffnjit
