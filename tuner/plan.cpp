// Tuning plans: one entry per (layer class, batch bucket).
#include "tuner/plan.hpp"

#include <map>

#include "model/specialize.hpp"
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

int measure_tokens(const BatchBucket& b) { return b.max_tokens >= (1 << 30) ? 8192 : b.max_tokens; }

Expected<Plan> make_plan(const model::ModelInfo& info, const std::vector<BatchBucket>& buckets,
                         const profile::Profile* profile) {
  Plan plan;
  plan.fingerprint = info.fingerprint;
  // Group layers by (signature, capacity).
  struct Group {
    LayerShape layer;
    Sparsity sparsity;
    std::vector<int> layers;
  };
  std::map<std::string, Group> groups;
  for (const auto& L : info.layers) {
    auto math = checkpoint_layer_shape(info, L);  // with its activation and biases
    FFNJIT_TRY(math);
    const LayerShape shape = *math;
    std::string sig = shape_signature(shape);
    Sparsity sp;
    if (profile) {
      const profile::LayerProfile* lp = nullptr;
      for (const auto& p : profile->layers)
        if (p.index == L.index) lp = &p;
      if (!lp)
        return user_error("the profile has no layer " + std::to_string(L.index) +
                          "; profile the same checkpoint with `ffnjit profile`");
      auto cap = model::choose_capacity(*lp, sp.tile_n);
      FFNJIT_TRY(cap);
      sp.capacity = cap->capacity;
      sig += ":tn" + std::to_string(sp.tile_n) + "c" + std::to_string(sp.capacity);
    }
    auto& g = groups[sig];
    g.layer = shape, g.sparsity = sp;
    g.layers.push_back(L.index);
  }
  for (const auto& [sig, g] : groups)
    for (const auto& b : buckets) {
      PlanEntry e;
      e.signature = sig, e.layer = g.layer, e.sparsity = g.sparsity, e.bucket = b;
      e.tokens = measure_tokens(b), e.representative = g.layers.front(), e.layers = g.layers;
      plan.entries.push_back(e);
    }
  return plan;
}

}  // namespace ffnjit
