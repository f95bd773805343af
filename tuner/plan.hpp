// Tuning plans: one entry per (layer class, batch bucket). Layers with the same
// shape (and sparsity class, when a profile tells them apart) share one run.
#pragma once

#include <string>
#include <vector>

#include "codegen/kernel_spec.hpp"
#include "model/checkpoint.hpp"
#include "model/profile.hpp"
#include "runtime/choice.hpp"
#include "support/status.hpp"

namespace ffnjit {

// "1,2-4,5-16,17-64,65-256,257-1024,1025-4096,4097+": sorted, contiguous from 1.
Expected<std::vector<BatchBucket>> parse_buckets(const std::string& text);
std::string format_bucket(const BatchBucket& b);  // "5-16", "4097+", "1"

struct PlanEntry {
  std::string signature;     // tuning record key part (shape_signature + class)
  LayerShape layer;
  Sparsity sparsity;         // TwELL parameters (capacity from the profile, if any)
  BatchBucket bucket;
  int tokens = 0;            // the token count the bucket is measured at
  int representative = 0;    // layer index whose weights are timed
  std::vector<int> layers;   // every layer this entry serves
};

struct Plan {
  std::string fingerprint;  // the checkpoint's
  std::vector<PlanEntry> entries;
};

// Builds the plan. Without a profile, all layers of one shape form one class with
// the default TwELL capacity; with one, layers are grouped by shape and by the
// capacity their observed tail needs.
Expected<Plan> make_plan(const model::ModelInfo& info, const std::vector<BatchBucket>& buckets,
                         const profile::Profile* profile = nullptr);

// The token count a bucket is timed at: its upper end, capped at 8192 for the open one.
int measure_tokens(const BatchBucket& b);

}  // namespace ffnjit
