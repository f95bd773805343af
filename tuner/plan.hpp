// Tuning plans: one entry per (layer, batch bucket), or per (layer shard, bucket) when
// the engine shards FFNs over tensor-parallel ranks. Each layer is tuned on its own
// inputs with its own TwELL capacity; compiled kernels are shared between layers.
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
std::string format_buckets(const std::vector<BatchBucket>& b);  // the comma list parse_buckets reads
// Every bucket must start and end on a boundary of the runtime's table, or no record
// tuned for it could be served (docs/identity.md); the error names the table.
Status check_servable(const std::vector<BatchBucket>& buckets);

struct PlanEntry {
  std::string signature;     // the layer id records are stored under (docs/identity.md)
  LayerShape layer;          // the layer's (or shard's) shape
  Sparsity sparsity;         // TwELL parameters (capacity from the profile, if any)
  BatchBucket bucket;
  int tokens = 0;            // the token count the bucket is measured at
  int layer_index = 0;       // the checkpoint layer whose weights are timed
  int tp_size = 1, tp_rank = 0;  // the shard of it (1, 0: the whole layer)
  std::string label() const;  // "layer 3" or "layer 3 tp2.1"
};

struct Plan {
  std::string fingerprint;  // the checkpoint's
  std::vector<PlanEntry> entries;  // layer by layer (shard by shard), buckets in order
};

// Builds the plan. With a profile (checked against the checkpoint's layers), each
// layer's capacity comes from its own observed tail; without, the default capacity.
// tp_size > 1 plans every shard of every layer (d_ff must split into multiples of 8).
Expected<Plan> make_plan(const model::ModelInfo& info, const std::vector<BatchBucket>& buckets,
                         const profile::Profile* profile = nullptr, int tp_size = 1);

// The token count a bucket is timed at: its upper end, capped at 8192 for the open one.
int measure_tokens(const BatchBucket& b);
// The bucket's low end, where its finalists are timed as well (select_choice), or 0 for
// a bucket of one token count.
int low_end_tokens(const BatchBucket& b);

}  // namespace ffnjit
