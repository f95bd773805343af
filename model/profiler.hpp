// Measuring a checkpoint's sparsity: layer inputs in, gate evaluated (CPU or a caller's GPU),
// profile out.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "model/checkpoint.hpp"
#include "model/profile.hpp"
#include "model/safetensors.hpp"

namespace ffnjit::model {

// Computes one layer's gate pre-activations: gate[m][j] = x[m] . Wg[j] + gate_bias[j]
// (or x[m] . Wu[j] + up_bias[j] for a non-gated layer; a bias term only where the layer
// has one) for `tokens` bf16 rows x [tokens][d_model],
// written as fp32 to gate [tokens][d_ff]. Only the sign matters to a profile, so any
// evaluator with fp32 accumulation (the GPU gate GEMM) gives the same profile up to
// values within rounding of 0.
using GateFn =
    std::function<Status(const LayerWeights& w, const uint16_t* x, int64_t tokens, float* gate)>;

// The fp64 CPU reference gate (ref::gate_row's math) on `threads` threads (0: all cores).
GateFn cpu_gate(int threads = 0);

// Captured FFN inputs of one layer, as bf16 [tokens][d_model].
struct LayerInputs {
  int layer = 0;
  int64_t tokens = 0;
  std::vector<uint16_t> x;
};

// Reads tensors named layers.<N>.input, shaped [tokens, d_model] or [batch, seq,
// d_model], dtype BF16/F16/F32, for the layers of `info`. Layers without inputs are
// left out; an input whose d_model disagrees, or a file with none, is an error.
Expected<std::vector<LayerInputs>> load_layer_inputs(const st::Store& inputs,
                                                     const ModelInfo& info);

struct ProfileOptions {
  std::vector<int> tile_widths = profile::kDefaultTileWidths;
  // The last fraction of each layer's tokens is held out of the profile, to evaluate
  // specializations (permutation, pruning) on inputs they were not fitted to.
  double held_out_fraction = 0.0;
  uint64_t keep_sample_tokens = 4096;  // fitted tokens kept per layer as active sets
  int64_t batch_tokens = 512;          // tokens per GateFn call
  std::string source = "ffnjit profile (cpu gate)";
};

struct ProfileRun {
  profile::Profile profile;
  std::map<int, profile::ActiveSets> fit;       // sample of the profiled tokens' active sets
  std::map<int, profile::ActiveSets> held_out;  // active sets of the held-out tokens
  std::map<int, LayerInputs> held_out_x;        // the held-out inputs themselves
  std::vector<int> layers_without_inputs;
};

// Loads each layer with inputs, evaluates its gate in batches with `gate` and
// accumulates the profile (tied to ckpt.info().fingerprint).
Expected<ProfileRun> profile_checkpoint(const Checkpoint& ckpt,
                                        const std::vector<LayerInputs>& inputs,
                                        const ProfileOptions& opts, const GateFn& gate);

// A profile describes this checkpoint: same fingerprint, and each profiled layer's
// d_model, d_ff and gating match. The error says to re-profile.
Status check_profile(const profile::Profile& p, const ModelInfo& info);

}  // namespace ffnjit::model
