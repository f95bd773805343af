// Synthetic layers and inputs with controlled sparsity, for tests and benchmarks.
// x carries a constant feature (x[:, 0] = 1) and Wg[:, 0] = -bias, so a neuron
// fires when its random projection beats its bias: P(active) is set per neuron.
#pragma once

#include <cstdint>
#include <vector>

namespace ffnjit::synth {

struct Layer {
  int d_model = 0, d_ff = 0;
  bool gated = true;
  std::vector<uint16_t> wg, wu, wd;  // bf16, Hugging Face layouts (wg empty when non-gated)
};

// Weights whose gate fires for about `active_fraction` of neurons per token on
// inputs from make_inputs (0 -> none, 1 -> all). Deterministic in `seed`.
Layer make_layer(int d_model, int d_ff, bool gated, double active_fraction, uint64_t seed);

// Rewrites the gate bias column so about `active_fraction` of neurons fire.
void set_active_fraction(Layer& layer, double active_fraction);

// Makes every neuron of tile [first, first + count) fire for every token.
void force_active(Layer& layer, int first, int count);

struct InputOptions {
  double heavy_fraction = 0.0;  // tokens whose features are scaled up (many more neurons fire)
  float heavy_scale = 3.0f;
};

// [tokens][d_model] bf16 with x[:, 0] = 1 and the other features uniform with unit variance.
std::vector<uint16_t> make_inputs(int tokens, int d_model, uint64_t seed, const InputOptions& opts = {});

}  // namespace ffnjit::synth
