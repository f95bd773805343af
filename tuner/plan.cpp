// Tuning plans: one entry per (layer or layer shard, batch bucket).
#include "tuner/plan.hpp"

#include <algorithm>

#include "model/profiler.hpp"
#include "model/specialize.hpp"
#include "runtime/buckets.hpp"
#include "runtime/identity.hpp"
#include "runtime/device_weights.hpp"
#include "support/strings.hpp"

namespace ffnjit {

Expected<std::vector<BatchBucket>> parse_buckets(const std::string& text) {
  std::vector<BatchBucket> out;
  const std::string hint = "; write buckets like 1,2-4,5-16,17-64,65-256,257-1024,1025-4096,4097+";
  for (const std::string& part : split(text, ',')) {
    BatchBucket b;
    try {
      size_t used = 0;
      if (!part.empty() && part.back() == '+') {
        b.min_tokens = std::stoi(part.substr(0, part.size() - 1), &used);
        if (used != part.size() - 1) throw std::invalid_argument(part);
        b.max_tokens = 1 << 30;
      } else if (auto dash = part.find('-'); dash != std::string::npos) {
        b.min_tokens = std::stoi(part.substr(0, dash), &used);
        if (used != dash) throw std::invalid_argument(part);
        b.max_tokens = std::stoi(part.substr(dash + 1), &used);
        if (used != part.size() - dash - 1) throw std::invalid_argument(part);
      } else {
        b.min_tokens = b.max_tokens = std::stoi(part, &used);
        if (used != part.size()) throw std::invalid_argument(part);
      }
    } catch (const std::exception&) {
      return user_error("bucket '" + part + "' is not N, N-M or N+" + hint);
    }
    const int expect = out.empty() ? 1 : out.back().max_tokens + 1;
    if (b.min_tokens != expect || b.max_tokens < b.min_tokens)
      return user_error("bucket '" + part + "' should start at " + std::to_string(expect) + hint);
    out.push_back(b);
  }
  if (out.empty()) return user_error("no buckets given" + hint);
  return out;
}

std::string format_bucket(const BatchBucket& b) {
  if (b.max_tokens >= (1 << 30)) return std::to_string(b.min_tokens) + "+";
  if (b.min_tokens == b.max_tokens) return std::to_string(b.min_tokens);
  return std::to_string(b.min_tokens) + "-" + std::to_string(b.max_tokens);
}

std::string format_buckets(const std::vector<BatchBucket>& buckets) {
  std::string s;
  for (const auto& b : buckets) s += (s.empty() ? "" : ",") + format_bucket(b);
  return s;
}

Status check_servable(const std::vector<BatchBucket>& buckets) {
  const auto& rt = default_buckets();
  auto starts = [&](int t) {
    for (const auto& r : rt)
      if (r.min_tokens == t) return true;
    return false;
  };
  auto ends = [&](int t) {
    for (const auto& r : rt)
      if (r.max_tokens == t) return true;
    return false;
  };
  for (const auto& b : buckets)
    if (!starts(b.min_tokens) || !ends(b.max_tokens))
      return user_error("bucket " + format_bucket(b) +
                        " splits a bucket of the runtime's table " + format_buckets(rt) +
                        ", so no record tuned for it could be served; use buckets made of whole runtime buckets "
                        "(e.g. 1-4 or 17-256)");
  return {};
}

int measure_tokens(const BatchBucket& b) { return b.max_tokens >= (1 << 30) ? 8192 : b.max_tokens; }

int low_end_tokens(const BatchBucket& b) {
  return b.min_tokens < measure_tokens(b) ? b.min_tokens : 0;
}

std::string PlanEntry::label() const {
  std::string s = "layer " + std::to_string(layer_index);
  if (tp_size > 1) s += " tp" + std::to_string(tp_size) + "." + std::to_string(tp_rank);
  return s;
}

namespace {

// The capacity a shard's tiles [first, first + n) need, from each tile's own 99.9th
// percentile (an upper bound of the shard's aggregate one), aligned as the rule says.
int shard_capacity(const profile::Tiling& t, int first, int n, const model::CapacityRule& rule) {
  uint32_t q = 1;
  for (int i = first; i < first + n && i < int(t.tile_p999.size()); ++i) q = std::max(q, t.tile_p999[i]);
  const int rounded = int((q + rule.align - 1) / rule.align * rule.align);
  return std::clamp(rounded, 1, t.tile_n);
}

}  // namespace

Expected<Plan> make_plan(const model::ModelInfo& info, const std::vector<BatchBucket>& buckets,
                         const profile::Profile* profile, int tp_size) {
  FFNJIT_TRY(check_servable(buckets));
  if (tp_size < 1 || tp_size > kMaxTensorParallel)
    return user_error("--tensor-parallel " + std::to_string(tp_size) + " is not 1.." +
                      std::to_string(kMaxTensorParallel));
  if (profile) FFNJIT_TRY(model::check_profile(*profile, info));
  Plan plan;
  plan.fingerprint = info.fingerprint;
  for (const auto& L : info.layers) {
    if (L.d_ff % (8 * tp_size))
      return user_error("layer " + std::to_string(L.index) + " has d_ff=" + std::to_string(L.d_ff) +
                        ", which does not split into " + std::to_string(tp_size) +
                        " tensor-parallel shards of a multiple of 8 neurons");
    auto math = checkpoint_layer_shape(info, L);  // with its activation and biases
    FFNJIT_TRY(math);
    const int shard_ff = L.d_ff / tp_size;
    const profile::LayerProfile* lp = profile ? profile->layer(L.index) : nullptr;
    if (profile && !lp)
      return user_error("the profile has no layer " + std::to_string(L.index) +
                        "; profile the same checkpoint with `ffnjit profile`");
    for (int rank = 0; rank < tp_size; ++rank) {
      Sparsity sp;
      if (lp) {
        auto cap = model::choose_capacity(*lp, sp.tile_n);
        FFNJIT_TRY(cap);
        sp.capacity = cap->capacity;
        // A shard on tile boundaries has its own tiles' statistics in the profile.
        const profile::Tiling* t = lp->tiling(sp.tile_n);
        if (tp_size > 1 && t && shard_ff % sp.tile_n == 0)
          sp.capacity = shard_capacity(*t, rank * shard_ff / sp.tile_n, shard_ff / sp.tile_n, model::CapacityRule{});
      }
      const LayerId id{info.fingerprint, L.index, tp_size, rank};
      for (const auto& b : buckets) {
        PlanEntry e;
        e.signature = format_layer_id(id);
        e.layer = *math;
        e.layer.d_ff = shard_ff;
        // A TP engine adds the down bias once (rank 0's shard), after the all-reduce sums.
        e.layer.down_bias = math->down_bias && rank == 0;
        e.sparsity = sp, e.bucket = b, e.tokens = measure_tokens(b);
        e.layer_index = L.index, e.tp_size = tp_size, e.tp_rank = rank;
        plan.entries.push_back(e);
      }
    }
  }
  return plan;
}

}  // namespace ffnjit
