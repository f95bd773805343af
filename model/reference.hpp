// fp64 CPU reference of the FFN and of TwELL packing: every GPU test compares against it.
#pragma once

#include <cstdint>
#include <vector>

namespace ffnjit::ref {

// The FFN's activation of the gate pre-activation z (codegen's Activation).
enum class Activation {
  kRelu,     // max(z, 0)
  kRelu2,    // max(z, 0)^2
  kFatRelu,  // z if z > threshold, else 0
};

// Host copies of one layer's bf16 weights in Hugging Face layouts:
// wg, wu [d_ff][d_model] (wg unused when !gated), wd [d_model][d_ff], and its math:
// optional biases (null: none; the values the kernels use, i.e. bf16-exact floats) and
// the activation.
struct FfnWeights {
  const uint16_t* wg = nullptr;
  const uint16_t* wu = nullptr;
  const uint16_t* wd = nullptr;
  int d_model = 0;
  int d_ff = 0;
  bool gated = true;
  const float* gate_bias = nullptr;  // [d_ff]: gate_proj.bias (gated only)
  const float* up_bias = nullptr;    // [d_ff]: up_proj.bias, or fc1.bias of a non-gated layer
  const float* down_bias = nullptr;  // [d_model]: down_proj.bias / fc2.bias
  Activation activation = Activation::kRelu;
  float threshold = 0.0f;  // kFatRelu's
};

// Gate pre-activations z of one token, fp64: x . Wg^T + bg, or x . Wu^T + bu when non-gated.
void gate_row(const FfnWeights& w, const uint16_t* x_row, double* g /*[d_ff]*/);
// gate_row for the listed tokens (rows of x) on all host cores; g is [tokens.size()][d_ff].
void gate_rows(const FfnWeights& w, const uint16_t* x, const std::vector<int>& tokens, double* g);

// Whether a neuron with pre-activation z is active, decided as every GPU path decides it
// (docs/kernels.md): on z rounded to bf16 (through fp32, as the kernels round their fp32
// sums), active unless bf16(z) <= 0 (relu, relu2) or bf16(z) <= threshold (fatrelu), so
// NaN is active. Deciding on the rounded value keeps a thresholded activation's jump
// where the kernels put it.
bool is_active(const FfnWeights& w, double z);
// act(z) of an active neuron in fp64 (z itself unrounded): z, or z * z for relu2.
double act_value(const FfnWeights& w, double z);

// out = (act(z) * (x Wu^T + bu)) Wd^T + bd, or act(z) Wd^T + bd, in fp64 from bf16
// inputs, for the listed tokens (rows of x): inactive neurons (is_active) contribute 0,
// active ones act_value. A token with a non-finite input is computed densely so that
// 0 * inf = NaN appears exactly as in the dense math. `out` is [tokens.size()][d_model].
// Runs on all host cores.
void ffn_forward(const FfnWeights& w, const uint16_t* x, const std::vector<int>& tokens, double* out);

// ffnjit's TwELL layout (docs/twell.md) on the host.
struct Twell {
  int tokens = 0, d_ff = 0, tile_n = 0, capacity = 0, n_tiles = 0;
  std::vector<uint32_t> counts;   // [tokens][n_tiles], may exceed capacity
  std::vector<uint32_t> entries;  // [tokens][n_tiles][capacity]; slots >= count are 0
  uint64_t overflow = 0;          // (token, tile) pairs with count > capacity
};

// Packs gate pre-activations ([tokens][d_ff], already bf16-rounded) with the activation:
// an entry bf16(act(z)) for every active value (not <= 0, or not <= threshold for
// fatrelu; NaN counts as active), in neuron order.
Twell twell_pack(const float* gate, int tokens, int d_ff, int tile_n, int capacity,
                 Activation activation = Activation::kRelu, float threshold = 0.0f);

// Dense [tokens][d_ff] from the stored entries (zeros elsewhere; overflowed
// entries beyond capacity are lost here, which is why the kernels recompute them).
std::vector<float> twell_unpack(const Twell& t);

}  // namespace ffnjit::ref
