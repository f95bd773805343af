// A synthetic ReLU-gated checkpoint whose sparsity resembles trained sparse LLMs (docs/model.md).
#pragma once

#include <cstdint>
#include <string>

#include "support/status.hpp"

namespace ffnjit::model {

struct DemoOptions {
  int layers = 4;
  int d_model = 512;
  int d_ff = 1536;
  int64_t tokens = 2048;  // rows of layers.N.input in inputs.safetensors
  uint64_t seed = 1;
  int shards = 1;  // > 1: model-0000i-of-0000n.safetensors + index
  // Mean active neurons per token as a fraction of d_ff, averaged over layers
  // (layers differ: x1.0, x0.6, x1.6, x0.8, repeating).
  double density = 0.005;
  double dead_fraction =
      0.3;  // averaged over layers (x1, x0, x2, x1, repeating: 30%, 0%, 60%, 30%)
};

// Writes config.json (model_type llama_sparse_relu), the weights (bf16 safetensors,
// Llama naming, plus embedding and norm tensors that discovery must skip) and
// inputs.safetensors (layers.N.input [tokens][d_model] bf16) into `dir`, creating it.
// Deterministic for a given seed on every platform (own RNG, no <random> distributions).
Status write_demo_checkpoint(const std::string& dir, const DemoOptions& opts);

}  // namespace ffnjit::model
