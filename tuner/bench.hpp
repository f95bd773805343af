// The sparse-vs-dense benchmark behind `ffnjit bench`: ffnjit's served path and the
// cuBLASLt dense path timed in the same process (CUDA graphs, L2 flushed), outputs
// checked against the fp64 reference. Two sources of layers: synthetic ones where ~k of
// d_ff neurons fire per token (uniform or heavy-tailed tokens), and every FFN layer of
// a checkpoint on its captured inputs, served through the cache's tuned records as an
// engine would be (docs/identity.md), next to the untuned defaults.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "codegen/kernel_spec.hpp"
#include "support/status.hpp"
#include "tuner/measure.hpp"

namespace ffnjit {

struct BenchOptions {
  int d_model = 2048, d_ff = 5632;
  bool gated = true;
  std::vector<int> tokens = {1, 16, 128, 2048, 8192, 32768};
  std::vector<int> k = {29, 56, 112, 282};  // synthetic: mean active neurons per token
  bool heavy = false;                        // synthetic: heavy-tailed tokens (10% fire ~8x more)
  // Synthetic: per row, select a choice as `ffnjit tune` does (tuner/select.hpp) and
  // time it next to the untuned defaults.
  bool tuned = false;
  bool shift = false;  // synthetic: select on uniform tokens, serve heavy-tailed ones
  // Checkpoint mode (non-empty): every FFN layer of it, on rows of its captured inputs
  // (`inputs`, else <checkpoint>/inputs.safetensors), served from `cache_path`.
  std::string checkpoint, inputs, cache_path;
  std::vector<int> heaviest = {1, 64, 512};  // checkpoint: also the N rows with most active neurons
  int device = 0;
  uint64_t seed = 2024;
  MeasureOptions measure;
};

struct BenchRow {
  int layer = -1;            // checkpoint layer (-1: synthetic)
  std::string rows;          // "random", "heaviest", "uniform", "heavy", "shift"
  int tokens = 0, k = 0;
  double measured_k = 0;     // mean active neurons per token the served sparse path saw
  double overflow_rate = 0;  // fraction of (token, tile) pairs over capacity
  Timing dense, untuned, tuned;  // tuned == untuned when nothing was tuned
  std::string untuned_kernels, tuned_kernels;
  std::string tuned_source;  // "layer record", "shape record", "no record", "selected here"
  double rel_error = 0;      // the served (tuned) output against the fp64 reference
  double ratio_untuned() const { return untuned.median_us > 0 ? dense.median_us / untuned.median_us : 0; }
  double ratio_tuned() const { return tuned.median_us > 0 ? dense.median_us / tuned.median_us : 0; }
};

// Runs every row; `progress` (may be empty) is told each finished one.
Expected<std::vector<BenchRow>> run_bench(const BenchOptions& opts,
                                          const std::function<void(const BenchRow&, int done, int total)>& progress);

}  // namespace ffnjit
