// The certified int8 gate screen (issue #16), host reference: an int8 copy of Wg (per-row
// scale) and of each token (per-token scale) give zhat = s_x s_j (x_q . w_q) exactly in
// integers, and a bound B with |z - zhat| <= B for the gate value z that any fp32 gate
// kernel computes, whatever its summation order. A neuron with zhat + b_j + B <= c (c the
// largest bf16 value <= the activation threshold) is certainly inactive; the others are
// candidates whose gate is computed exactly as today. docs/kernels.md ("Certified int8
// screen") derives the bound; the GPU kernels are still to come.
//
// A few columns whose weights dwarf the rest (Wg's outlier features; the synthetic layers'
// bias column) stay exact: they are left out of the int8 copy and summed exactly, so one
// column does not set every row's int8 step.
#pragma once

#include <cstdint>
#include <vector>

#include "model/reference.hpp"
#include "support/status.hpp"

namespace ffnjit::screen {

struct Options {
  // Columns whose largest |w| exceeds outlier_ratio x the median column's largest |w|
  // stay exact (at most max_outliers of them, the largest first); 0 turns this off.
  int max_outliers = 16;
  double outlier_ratio = 8.0;
};

// Built once per layer from Wg ([d_ff][d_model] bf16, Hugging Face layout).
struct Rows {
  int d_model = 0, d_ff = 0;
  std::vector<int> outliers;          // exact columns, ascending
  std::vector<int8_t> q;              // [d_ff][d_model], 0 in the exact columns
  std::vector<uint16_t> exact;        // [d_ff][outliers.size()] bf16: the exact columns' weights
  std::vector<float> scale;           // [d_ff] s_j: w_jc ~ s_j q_jc
  std::vector<float> err_norm;        // [d_ff] ||w_j - what_j|| over the int8 columns, rounded up
  std::vector<float> q_norm;          // [d_ff] ||what_j|| over the int8 columns, rounded up
  std::vector<float> norm;            // [d_ff] ||w_j|| over all columns, rounded up
  std::vector<uint8_t> always;        // [d_ff] 1: a non-finite weight, always a candidate
  // Device memory the screen adds to a layer (int8 copy, exact columns, per-row floats).
  size_t bytes() const;
};

// One token's int8 copy and norms (the kernels compute these next to the quantization).
struct Token {
  std::vector<int8_t> q;       // [d_model], 0 in the exact columns
  float scale = 0;             // s_x
  float norm = 0;              // ||x|| over the int8 columns, rounded up
  float err_norm = 0;          // ||x - xhat|| over the int8 columns, rounded up
  float norm_all = 0;          // ||x|| over all columns, rounded up
  bool finite = true;          // false: NaN or Inf in x, every neuron is a candidate
};

Expected<Rows> build_rows(const uint16_t* wg, int d_ff, int d_model, const Options& opts = {});
Token quantize_token(const Rows& rows, const uint16_t* x);

// zhat + b_j and the bound B for neuron j (b_j: bf16 gate bias value, 0 without one).
struct Estimate {
  double value = 0;  // zhat + b_j
  double bound = 0;  // B, every rounding included: |z - value| <= bound
};
Estimate estimate(const Rows& rows, const Token& t, const uint16_t* x, int j, float bias);

// Whether neuron j may be active for this token under "active iff !(z <= threshold)"
// (relu and relu2: threshold 0; FATReLU: its threshold), z being the bf16 gate value.
// false is a proof that the neuron is inactive.
bool candidate(const Rows& rows, const Token& t, const uint16_t* x, int j, float bias, float threshold);

// What the screen leaves on a layer's tokens (`ffnjit profile --screen`): per token, the
// neurons active (exact gate value, double) and the candidates left; `ruled_out_active`
// counts neurons the screen ruled out that were active, which the bound makes 0.
struct LayerReport {
  int exact_columns = 0;
  size_t bytes = 0;
  int64_t tokens = 0;
  double active_mean = 0, candidates_mean = 0;
  int candidates_p99 = 0, candidates_max = 0;
  int64_t ruled_out_active = 0;
};
// The layer's gate (Wg, or Wu when non-gated), its bias and activation threshold come
// from `w`; activity is the fp64 reference's (ref::gate_rows, ref::is_active). x
// [tokens][d_model] bf16; tokens evenly spaced, at most max_tokens of them, are screened.
Expected<LayerReport> measure_layer(const ref::FfnWeights& w, const uint16_t* x, int64_t tokens,
                                    int64_t max_tokens, const Options& opts = {});

// The error bound's parts that depend on the format only: gamma(n) = n u / (1 - n u)
// for fp32 sums of n terms in any order, with u = 2^-22 (two units in the last place per
// addition: covers round-to-nearest and the truncating accumulation of tensor cores).
double gamma_fp32(int n);
// The largest bf16 value <= v (v finite).
float bf16_floor(float v);

}  // namespace ffnjit::screen
