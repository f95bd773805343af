// The sparse-vs-dense benchmark behind `ffnjit bench`: synthetic layers where ~k of
// d_ff neurons fire per token, ffnjit's path and the cuBLASLt dense path timed in the
// same process (both as CUDA graphs), outputs cross-checked.
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
  std::vector<int> k = {29, 56, 112, 282};  // mean active neurons per token
  bool heavy = false;                        // heavy-tailed tokens (10% of tokens fire ~8x more)
  // Per row, search the tuner's candidates (tuner/search.hpp) as `ffnjit tune` does and
  // serve the winner, or the dense path where it is as fast; false: the untuned defaults.
  bool tuned = false;
  int device = 0;
  MeasureOptions measure;
};

struct BenchRow {
  int tokens = 0, k = 0;
  double measured_k = 0;     // mean active neurons per token seen by the kernel
  double overflow_rate = 0;  // fraction of (token, tile) pairs over capacity
  std::string sparse_kernels;  // "dense fallback" where the tuned search kept the dense path
  Timing dense, sparse;
  double ratio = 0;          // dense / sparse
  double rel_diff = 0;       // ||sparse - dense|| / ||dense||
};

// Runs every (k, tokens) pair; `progress` (may be empty) is told each finished row.
Expected<std::vector<BenchRow>> run_bench(const BenchOptions& opts,
                                          const std::function<void(const BenchRow&, int done, int total)>& progress);

}  // namespace ffnjit
