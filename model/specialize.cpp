// Specializations from a sparsity profile: capacity, neuron permutation, dead-neuron pruning.
#include "model/specialize.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "support/bf16.hpp"

namespace ffnjit::model {

// ---- capacity ----

Expected<CapacityChoice> choose_capacity(const profile::LayerProfile& layer, int tile_n,
                                         const CapacityRule& rule) {
  const profile::Tiling* t = layer.tiling(tile_n);
  if (!t)
    return user_error("the profile of layer " + std::to_string(layer.index) +
                      " has no tile width " + std::to_string(tile_n) +
                      "; profile again with that width (ffnjit profile --tile-n)");
  if (rule.align < 1 || !(rule.quantile > 0 && rule.quantile <= 1))
    return user_error("capacity rule needs align >= 1 and a quantile in (0, 1]");
  CapacityChoice c;
  c.tile_n = tile_n;
  c.observed_quantile = t->per_tile.quantile(rule.quantile);
  c.observed_max = t->per_tile.max();
  const int64_t q = std::max<int64_t>(1, c.observed_quantile);
  const int64_t rounded = (q + rule.align - 1) / rule.align * rule.align;
  c.capacity = int(std::clamp<int64_t>(rounded, 1, tile_n));
  const uint64_t total = t->per_tile.total();
  c.overflow_fraction =
      total ? double(t->per_tile.count_above(uint32_t(c.capacity))) / double(total) : 0.0;
  return c;
}

// ---- permutation ----

Status check_permutation(const std::vector<uint32_t>& p, int d_ff) {
  if (p.size() != size_t(d_ff))
    return user_error("permutation has " + std::to_string(p.size()) +
                      " entries for d_ff=" + std::to_string(d_ff));
  std::vector<bool> seen(p.size(), false);
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] >= p.size())
      return user_error("permutation entry " + std::to_string(i) + " = " + std::to_string(p[i]) +
                        " is out of range");
    if (seen[p[i]])
      return user_error("permutation maps two neurons to old neuron " + std::to_string(p[i]) +
                        "; not a bijection");
    seen[p[i]] = true;
  }
  return {};
}

std::vector<uint32_t> invert_permutation(const std::vector<uint32_t>& p) {
  std::vector<uint32_t> inv(p.size());
  for (size_t i = 0; i < p.size(); ++i) inv[p[i]] = uint32_t(i);
  return inv;
}

TileLoad tile_load(const profile::ActiveSets& s, int tile_n,
                   const std::vector<uint32_t>& new_to_old) {
  TileLoad r;
  if (tile_n < 1 || s.d_ff < 1) return r;
  const std::vector<uint32_t> old_to_new =
      new_to_old.empty() ? std::vector<uint32_t>() : invert_permutation(new_to_old);
  const int n_tiles = (s.d_ff + tile_n - 1) / tile_n;
  std::vector<uint64_t> hist(size_t(tile_n) + 1, 0);
  std::vector<uint32_t> counts(n_tiles);
  for (uint64_t m = 0; m < s.tokens(); ++m) {
    std::fill(counts.begin(), counts.end(), 0);
    for (uint64_t i = s.offsets[m]; i < s.offsets[m + 1]; ++i) {
      const uint32_t j = old_to_new.empty() ? s.neurons[i] : old_to_new[s.neurons[i]];
      counts[j / tile_n]++;
    }
    for (uint32_t c : counts) hist[c]++;
    const uint64_t n = s.offsets[m + 1] - s.offsets[m];
    r.bound = std::max(r.bound, uint32_t((n + n_tiles - 1) / n_tiles));
  }
  profile::Histogram h;
  for (size_t v = 0; v < hist.size(); ++v)
    if (hist[v]) h.bins.emplace_back(uint32_t(v), hist[v]);
  r.tokens = s.tokens();
  r.max = h.max(), r.p99 = h.quantile(0.99), r.p999 = h.quantile(0.999), r.mean = h.mean();
  return r;
}

namespace {
bool better(const TileLoad& a, const TileLoad& b) {
  return a.max < b.max ||
         (a.max == b.max && (a.p999 < b.p999 || (a.p999 == b.p999 && a.p99 < b.p99)));
}
}  // namespace

namespace {

// Local search after the greedy placement: for each (token, tile) pair at the top two
// levels of the count, try moving one of its active neurons to another tile, swapping
// it with that tile's coldest neuron not active in the token; keep the best swap
// when it lowers sum over (token, tile) of count^4 (which weighs peaks most).
void refine(const profile::ActiveSets& fit, const std::vector<std::vector<uint32_t>>& fires,
            int tile_n, std::vector<std::vector<uint32_t>>& members, std::vector<uint32_t>& load) {
  const int n_tiles = int(members.size());
  const uint64_t tokens = fit.tokens();
  if (tokens == 0 || n_tiles < 2) return;
  (void)tile_n;
  std::vector<int> tile_of(fires.size());
  for (int t = 0; t < n_tiles; ++t)
    for (uint32_t j : members[t]) tile_of[j] = t;
  auto f = [](double c) { return c * c * c * c; };
  auto active_in = [&](uint64_t m, uint32_t j) {
    return std::binary_search(fit.neurons.begin() + ptrdiff_t(fit.offsets[m]),
                              fit.neurons.begin() + ptrdiff_t(fit.offsets[m + 1]), j);
  };
  // Change of the objective if a (in A) and b (in B) trade tiles.
  auto delta = [&](uint32_t a, int A, uint32_t b, int B) {
    double d = 0;
    const auto &fa = fires[a], &fb = fires[b];
    size_t i = 0, k = 0;
    while (i < fa.size() || k < fb.size()) {
      const bool take_a = k == fb.size() || (i < fa.size() && fa[i] < fb[k]);
      const bool take_b = i == fa.size() || (k < fb.size() && fb[k] < fa[i]);
      if (take_a || take_b) {
        const uint32_t m = take_a ? fa[i++] : fb[k++];
        const double ca = load[size_t(m) * n_tiles + A], cb = load[size_t(m) * n_tiles + B];
        d += take_a ? f(ca - 1) - f(ca) + f(cb + 1) - f(cb) : f(cb - 1) - f(cb) + f(ca + 1) - f(ca);
      } else {
        ++i, ++k;  // both fire in this token: its counts do not change
      }
    }
    return d;
  };
  auto apply = [&](uint32_t a, int A, uint32_t b, int B) {
    for (uint32_t m : fires[a]) load[size_t(m) * n_tiles + A]--, load[size_t(m) * n_tiles + B]++;
    for (uint32_t m : fires[b]) load[size_t(m) * n_tiles + B]--, load[size_t(m) * n_tiles + A]++;
    std::replace(members[A].begin(), members[A].end(), a, b);
    std::replace(members[B].begin(), members[B].end(), b, a);
    tile_of[a] = B, tile_of[b] = A;
  };
  // Coldest first, so that the partner of a move is usually a dead or rare neuron.
  for (auto& mem : members)
    std::stable_sort(mem.begin(), mem.end(),
                     [&](uint32_t x, uint32_t y) { return fires[x].size() < fires[y].size(); });
  for (int pass = 0; pass < 64; ++pass) {
    const uint32_t top = *std::max_element(load.begin(), load.end());
    if (top <= 1) break;
    bool improved = false;
    for (uint64_t m = 0; m < tokens; ++m)
      for (int A = 0; A < n_tiles; ++A) {
        if (load[size_t(m) * n_tiles + A] + 1 < top) continue;
        double best = -1e-9;
        uint32_t ba = 0, bb = 0;
        int bB = -1;
        for (uint64_t i = fit.offsets[m]; i < fit.offsets[m + 1]; ++i) {
          const uint32_t a = fit.neurons[i];
          if (tile_of[a] != A) continue;
          for (int B = 0; B < n_tiles; ++B) {
            if (B == A || load[size_t(m) * n_tiles + B] + 2 > load[size_t(m) * n_tiles + A])
              continue;
            for (uint32_t b : members[B]) {
              if (active_in(m, b)) continue;
              const double d = delta(a, A, b, B);
              if (d < best) best = d, ba = a, bb = b, bB = B;
              break;  // only the coldest eligible partner per tile
            }
          }
        }
        if (bB >= 0) {
          apply(ba, A, bb, bB);
          improved = true;
        }
      }
    if (!improved) break;
    for (auto& mem : members)
      std::stable_sort(mem.begin(), mem.end(),
                       [&](uint32_t x, uint32_t y) { return fires[x].size() < fires[y].size(); });
  }
}

}  // namespace

Expected<PermutationResult> find_permutation(const profile::ActiveSets& fit, int tile_n,
                                             const profile::ActiveSets* eval) {
  const int d_ff = fit.d_ff;
  if (tile_n < 1 || d_ff < 1)
    return user_error("permutation search needs tile_n >= 1 and d_ff >= 1");
  if (eval && eval->d_ff != d_ff)
    return user_error("evaluation sample has d_ff=" + std::to_string(eval->d_ff) + ", fit sample " +
                      std::to_string(d_ff));
  const int n_tiles = (d_ff + tile_n - 1) / tile_n;
  const uint64_t tokens = fit.tokens();

  // Inverted index: the tokens each neuron fires in.
  std::vector<std::vector<uint32_t>> fires(static_cast<size_t>(d_ff));
  for (uint64_t m = 0; m < tokens; ++m)
    for (uint64_t i = fit.offsets[m]; i < fit.offsets[m + 1]; ++i)
      fires[fit.neurons[i]].push_back(uint32_t(m));
  std::vector<uint32_t> order(static_cast<size_t>(d_ff));
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t a, uint32_t b) { return fires[a].size() > fires[b].size(); });

  std::vector<int> free(static_cast<size_t>(n_tiles));
  for (int t = 0; t < n_tiles; ++t) free[t] = std::min(tile_n, d_ff - t * tile_n);
  std::vector<uint32_t> load(size_t(tokens) * n_tiles, 0);  // [token][tile] counts so far
  std::vector<std::vector<uint32_t>> members(static_cast<size_t>(n_tiles));
  std::vector<double> cost(static_cast<size_t>(n_tiles));
  for (uint32_t j : order) {
    int best = -1;
    if (!fires[j].empty()) {
      std::fill(cost.begin(), cost.end(), 0.0);
      for (uint32_t m : fires[j]) {
        const uint32_t* row = load.data() + size_t(m) * n_tiles;
        for (int t = 0; t < n_tiles; ++t) {
          const double c = row[t];
          cost[t] += 3 * c * c + 3 * c + 1;  // (c+1)^3 - c^3
        }
      }
      for (int t = 0; t < n_tiles; ++t)
        if (free[t] > 0 &&
            (best < 0 || cost[t] < cost[best] || (cost[t] == cost[best] && free[t] > free[best])))
          best = t;
      for (uint32_t m : fires[j]) load[size_t(m) * n_tiles + best]++;
    } else {
      for (int t = 0; t < n_tiles; ++t)  // never fired: fill the emptiest tile
        if (free[t] > 0 && (best < 0 || free[t] > free[best])) best = t;
    }
    free[best]--;
    members[best].push_back(j);
  }
  refine(fit, fires, tile_n, members, load);
  PermutationResult r;
  r.new_to_old.reserve(size_t(d_ff));
  for (auto& mem : members) {
    std::sort(mem.begin(), mem.end());
    r.new_to_old.insert(r.new_to_old.end(), mem.begin(), mem.end());
  }
  FFNJIT_TRY(check_permutation(r.new_to_old, d_ff));  // a bug here must not corrupt weights

  r.held_out = eval != nullptr;
  const profile::ActiveSets& ev = eval ? *eval : fit;
  r.fit_before = tile_load(fit, tile_n);
  r.fit_after = tile_load(fit, tile_n, r.new_to_old);
  r.eval_before = eval ? tile_load(ev, tile_n) : r.fit_before;
  r.eval_after = eval ? tile_load(ev, tile_n, r.new_to_old) : r.fit_after;
  r.improves = better(r.eval_after, r.eval_before);
  return r;
}

Status permute_ffn_bf16(uint16_t* wg, uint16_t* wu, uint16_t* wd, int d_model, int d_ff,
                        const std::vector<uint32_t>& p) {
  FFNJIT_TRY(check_permutation(p, d_ff));
  if (!wu || !wd || d_model < 1)
    return user_error("permute_ffn_bf16: wu and wd are required and d_model must be >= 1");
  std::vector<uint16_t> tmp;
  for (uint16_t* w : {wg, wu}) {
    if (!w) continue;
    tmp.assign(w, w + size_t(d_ff) * d_model);
    for (int i = 0; i < d_ff; ++i)
      std::copy_n(tmp.data() + size_t(p[i]) * d_model, d_model, w + size_t(i) * d_model);
  }
  tmp.resize(size_t(d_ff));
  for (int d = 0; d < d_model; ++d) {
    uint16_t* row = wd + size_t(d) * d_ff;
    std::copy_n(row, d_ff, tmp.data());
    for (int i = 0; i < d_ff; ++i) row[i] = tmp[p[i]];
  }
  return {};
}

Status permute_layer(LayerWeights& w, const std::vector<uint32_t>& p) {
  const size_t mat = size_t(w.d_ff) * w.d_model;
  if (w.wu.size() != mat || w.wd.size() != mat || (w.gated && w.wg.size() != mat))
    return user_error("layer " + std::to_string(w.index) +
                      ": weight sizes do not match d_model x d_ff");
  FFNJIT_TRY(permute_ffn_bf16(w.gated ? w.wg.data() : nullptr, w.wu.data(), w.wd.data(), w.d_model,
                              w.d_ff, p));
  for (std::vector<float>* bias :
       {&w.gate_bias, &w.up_bias}) {  // per-neuron biases move with their rows
    if (bias->empty()) continue;
    const std::vector<float> b = *bias;
    for (int i = 0; i < w.d_ff; ++i) (*bias)[i] = b[p[i]];
  }
  return {};
}

profile::ActiveSets permute_active_sets(const profile::ActiveSets& s,
                                        const std::vector<uint32_t>& new_to_old) {
  const std::vector<uint32_t> inv = invert_permutation(new_to_old);
  profile::ActiveSets out;
  out.d_ff = s.d_ff;
  std::vector<uint32_t> row;
  for (uint64_t m = 0; m < s.tokens(); ++m) {
    row.clear();
    for (uint64_t i = s.offsets[m]; i < s.offsets[m + 1]; ++i) row.push_back(inv[s.neurons[i]]);
    std::sort(row.begin(), row.end());
    out.add_token(row.data(), row.size());
  }
  return out;
}

// ---- dead neurons ----

DeadNeuronReport dead_neurons(const profile::LayerProfile& l) {
  DeadNeuronReport r;
  r.layer = l.index, r.d_ff = l.d_ff, r.tokens = l.tokens, r.dead = l.dead_neurons;
  r.fraction = l.d_ff ? double(r.dead.size()) / l.d_ff : 0.0;
  return r;
}

Expected<PruneResult> prune_dead(const LayerWeights& w, const profile::LayerProfile& l,
                                 const uint16_t* x, int64_t tokens, int multiple) {
  if (!w.gate_bias.empty() || !w.up_bias.empty() || !w.down_bias.empty())
    return unsupported("layer " + std::to_string(w.index) +
                       " has biases; pruning does not remove a dead neuron's bias entries "
                       "yet, so it is not offered for this layer");
  if (l.d_ff != w.d_ff || l.index != w.index)
    return user_error("the profile's layer " + std::to_string(l.index) +
                      " (d_ff=" + std::to_string(l.d_ff) + ") does not describe layer " +
                      std::to_string(w.index) + " (d_ff=" + std::to_string(w.d_ff) + ")");
  if (tokens < 1 || !x)
    return user_error(
        "pruning needs held-out inputs to measure its error on; hold some tokens out of the "
        "profile");
  if (multiple < 1) return user_error("prune_dead: multiple must be >= 1");
  int removed = int(l.dead_neurons.size());
  while (removed > 0 && ((w.d_ff - removed) % multiple != 0 || w.d_ff - removed < 1)) --removed;
  PruneResult r;
  r.removed = removed;
  r.held_out_tokens = tokens;
  std::vector<bool> drop(size_t(w.d_ff), false);
  for (int i = 0; i < removed; ++i) drop[l.dead_neurons[i]] = true;
  for (int j = 0; j < w.d_ff; ++j)
    if (!drop[j]) r.kept.push_back(uint32_t(j));
  const int kept = int(r.kept.size());
  LayerWeights& p = r.weights;
  p.index = w.index, p.d_model = w.d_model, p.d_ff = kept, p.gated = w.gated;
  for (uint32_t j : r.kept) {
    if (w.gated)
      p.wg.insert(p.wg.end(), w.wg.begin() + ptrdiff_t(size_t(j) * w.d_model),
                  w.wg.begin() + ptrdiff_t(size_t(j + 1) * w.d_model));
    p.wu.insert(p.wu.end(), w.wu.begin() + ptrdiff_t(size_t(j) * w.d_model),
                w.wu.begin() + ptrdiff_t(size_t(j + 1) * w.d_model));
  }
  p.wd.resize(size_t(w.d_model) * kept);
  for (int d = 0; d < w.d_model; ++d)
    for (int i = 0; i < kept; ++i)
      p.wd[size_t(d) * kept + i] = w.wd[size_t(d) * w.d_ff + r.kept[i]];

  // How often the removed neurons fire on inputs the profile did not see.
  const uint16_t* wg = w.gated ? w.wg.data() : w.wu.data();
  for (int64_t m = 0; m < tokens; ++m)
    for (int j = 0; j < w.d_ff; ++j) {
      if (!drop[j]) continue;
      double g = 0;
      for (int k = 0; k < w.d_model; ++k)
        g += double(bf16_to_float(x[size_t(m) * w.d_model + k])) *
             bf16_to_float(wg[size_t(j) * w.d_model + k]);
      r.pruned_activations += !(g <= 0);
    }

  std::vector<int> rows(static_cast<size_t>(tokens));
  std::iota(rows.begin(), rows.end(), 0);
  std::vector<double> full(size_t(tokens) * w.d_model), pruned(full.size());
  ref::ffn_forward(w.view(), x, rows, full.data());
  ref::ffn_forward(p.view(), x, rows, pruned.data());
  double num = 0, den = 0;
  for (int64_t m = 0; m < tokens; ++m) {
    double tn = 0, td = 0;
    for (int d = 0; d < w.d_model; ++d) {
      const double a = full[size_t(m) * w.d_model + d], b = pruned[size_t(m) * w.d_model + d];
      tn += (a - b) * (a - b), td += a * a;
    }
    num += tn, den += td;
    const double e = td > 0 ? std::sqrt(tn / td) : (tn > 0 ? INFINITY : 0.0);
    r.max_token_rel_error = std::max(r.max_token_rel_error, e);
  }
  r.rel_error = den > 0 ? std::sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
  return r;
}

}  // namespace ffnjit::model
