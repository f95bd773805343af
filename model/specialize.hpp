// Specializations from a sparsity profile: per-layer TwELL capacity, a lossless neuron
// permutation that lowers the per-tile peak, dead-neuron report and opt-in pruning.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/checkpoint.hpp"
#include "model/profile.hpp"
#include "support/status.hpp"

namespace ffnjit::model {

// ---- capacity ----

// capacity = the `quantile` (nearest rank) of the layer's active-per-(token, tile)
// histogram at this tile width, at least 1, rounded up to a multiple of `align`
// entries (align 4 = 16 bytes of 4-byte entries: one vector store per 4 entries),
// clamped to [1, tile_n]. The default keeps overflow (which the kernels handle
// exactly on the backup path) to at most 0.1% of the profiled (token, tile) pairs.
struct CapacityRule {
  double quantile = 0.999;
  int align = 4;
};

struct CapacityChoice {
  int tile_n = 0;
  int capacity = 0;
  uint32_t observed_quantile = 0;  // the count the rule started from
  uint32_t observed_max = 0;
  double overflow_fraction = 0;  // profiled (token, tile) pairs with count > capacity
};

// Error when the profile has no tiling of that width (profile again with it).
Expected<CapacityChoice> choose_capacity(const profile::LayerProfile& layer, int tile_n,
                                         const CapacityRule& rule = {});

// ---- permutation ----

// A permutation of d_ff given as new_to_old[new neuron] = old neuron. Applying it
// moves row new_to_old[i] of Wg and Wu (and entry i of the gate and up biases) to row
// i, and column new_to_old[i] of Wd to column i: the FFN output is unchanged.
Status check_permutation(const std::vector<uint32_t>& new_to_old,
                         int d_ff);  // a bijection of [0, d_ff)
std::vector<uint32_t> invert_permutation(const std::vector<uint32_t>& p);

// Per-(token, tile) active counts of a sample under a permutation (empty: identity).
struct TileLoad {
  uint64_t tokens = 0;
  uint32_t max = 0, p99 = 0, p999 = 0;  // nearest rank over all (token, tile) pairs
  double mean = 0;
  uint32_t bound =
      0;  // no permutation can make max lower: max over tokens of ceil(active / n_tiles)
};
TileLoad tile_load(const profile::ActiveSets& sample, int tile_n,
                   const std::vector<uint32_t>& new_to_old = {});

struct PermutationResult {
  std::vector<uint32_t> new_to_old;  // the permutation found; adopt it only when `improves`
  bool improves = false;  // lower max (or equal max and lower p99.9, p99) on the evaluation set
  TileLoad fit_before, fit_after;    // on the sample it was fitted to
  TileLoad eval_before, eval_after;  // on the evaluation sample (held-out), or the fit sample
  bool held_out = false;             // eval_* come from a separate sample
};

// Greedy co-activation balancing: neurons in decreasing firing count (hot ones spread
// across tiles first); each goes to the tile with free slots where it adds the least
// to sum over tokens of count^3 of the tokens it fires in (co-activation with the
// neurons already there, weighted towards peaks), ties to the emptiest tile. Neurons
// that never fired fill the remaining slots. A local search then moves neurons out of
// the fullest (token, tile) pairs while that lowers sum of count^4. Within a tile
// neurons keep their original order. `improves` says whether it beats the identity on
// `eval` (held-out active sets; `fit` when null); keep the identity when it does not.
Expected<PermutationResult> find_permutation(const profile::ActiveSets& fit, int tile_n,
                                             const profile::ActiveSets* eval = nullptr);

// Applies a permutation to host bf16 weights in Hugging Face layouts.
Status permute_ffn_bf16(uint16_t* wg /*nullable: non-gated*/, uint16_t* wu, uint16_t* wd,
                        int d_model, int d_ff, const std::vector<uint32_t>& new_to_old);
Status permute_layer(LayerWeights& w, const std::vector<uint32_t>& new_to_old);  // also the biases
// Renumbers active sets (e.g. to profile a permuted model without recomputing the gate).
profile::ActiveSets permute_active_sets(const profile::ActiveSets& s,
                                        const std::vector<uint32_t>& new_to_old);

// ---- dead neurons ----

struct DeadNeuronReport {
  int layer = 0, d_ff = 0;
  uint64_t tokens = 0;  // tokens the profile observed
  std::vector<uint32_t> dead;
  double fraction = 0;
};
DeadNeuronReport dead_neurons(const profile::LayerProfile& layer);

struct PruneResult {
  LayerWeights weights;        // d_ff = kept.size()
  std::vector<uint32_t> kept;  // old indices of the kept neurons, increasing
  int removed = 0;             // dead neurons dropped (a multiple that keeps d_ff % multiple == 0)
  int64_t held_out_tokens = 0;
  uint64_t pruned_activations = 0;  // times a removed neuron fired on the held-out inputs
  double rel_error = 0;  // ||out_pruned - out|| / ||out|| over all held-out tokens (fp64 reference)
  double max_token_rel_error = 0;  // the worst token's relative error
};

// Opt-in: removes neurons the profile saw as dead and measures the error that causes
// on held-out inputs (x [tokens][d_model] bf16) with the fp64 reference. Keeps
// d_ff a multiple of `multiple` by keeping some dead neurons. Layers with biases are
// refused (the reference has no bias term).
Expected<PruneResult> prune_dead(const LayerWeights& w, const profile::LayerProfile& layer,
                                 const uint16_t* held_out_x, int64_t tokens, int multiple = 8);

}  // namespace ffnjit::model
