// fp64 CPU reference of the FFN and of TwELL packing: every GPU test compares against it.
#pragma once

#include <cstdint>
#include <vector>

namespace ffnjit::ref {

// Host copies of one layer's bf16 weights in Hugging Face layouts:
// wg, wu [d_ff][d_model] (wg unused when !gated), wd [d_model][d_ff].
struct FfnWeights {
  const uint16_t* wg = nullptr;
  const uint16_t* wu = nullptr;
  const uint16_t* wd = nullptr;
  int d_model = 0;
  int d_ff = 0;
  bool gated = true;
};

// Gate pre-activations (x . Wg^T, or x . Wu^T when non-gated) of one token, fp64.
void gate_row(const FfnWeights& w, const uint16_t* x_row, double* g /*[d_ff]*/);
// gate_row for the listed tokens (rows of x) on all host cores; g is [tokens.size()][d_ff].
void gate_rows(const FfnWeights& w, const uint16_t* x, const std::vector<int>& tokens, double* g);

// out = (relu(x Wg^T) * (x Wu^T)) Wd^T, or relu(x Wu^T) Wd^T, in fp64 from bf16
// inputs, for the listed tokens (rows of x). A token with a non-finite input is
// computed densely so that 0 * inf = NaN appears exactly as in the dense math.
// `out` is [tokens.size()][d_model]. Runs on all host cores.
void ffn_forward(const FfnWeights& w, const uint16_t* x, const std::vector<int>& tokens, double* out);

// ffnjit's TwELL layout (docs/twell.md) on the host.
struct Twell {
  int tokens = 0, d_ff = 0, tile_n = 0, capacity = 0, n_tiles = 0;
  std::vector<uint32_t> counts;   // [tokens][n_tiles], may exceed capacity
  std::vector<uint32_t> entries;  // [tokens][n_tiles][capacity]; slots >= count are 0
  uint64_t overflow = 0;          // (token, tile) pairs with count > capacity
};

// Packs gate values ([tokens][d_ff], already bf16-rounded) with ReLU: an entry for
// every value that is not <= 0 (NaN counts as active), in neuron order.
Twell twell_pack(const float* gate, int tokens, int d_ff, int tile_n, int capacity);

// Dense [tokens][d_ff] from the stored entries (zeros elsewhere; overflowed
// entries beyond capacity are lost here, which is why the kernels recompute them).
std::vector<float> twell_unpack(const Twell& t);

}  // namespace ffnjit::ref
