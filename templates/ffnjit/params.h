// Kernel parameter structs, shared verbatim by the device templates and the host
// launch code (plain C++: compiles under NVRTC, nvcc and g++), so the two sides
// cannot disagree on layout.
#pragma once

namespace ffnjit {

typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

// TwELL buffers in the caller's workspace (docs/twell.md).
struct TwellBuffers {
  u32* counts;    // [tokens][n_tiles]: active neurons in the tile (may exceed capacity)
  u32* entries;   // [tokens][n_tiles][capacity]: bf16 value << 16 | index in tile
  u32* overflow;  // [1]: (token, tile) pairs whose count exceeded capacity
  u32* tickets;   // [tokens]: arrivals of a token's split up_down CTAs; zeroed by the packer
  // [tokens][d_ff] bf16 or null: the fused gates write the gate values of every tile over
  // capacity here, so up/down need not recompute them (the GEMM gate's output holds them).
  u16* gate_spill;
  // [3] or null: this chunk's active (token, neuron) pairs, tiles over capacity and pack
  // CTAs done, summed for the device-side dense switch (zero before the gate).
  u32* forward_stats;
  u32* heavy;  // [1 + kHeavySlots] or null: the heavy-token list up_down fills; the packer zeroes [0]
  // The dense switch (pack only): when nonzero, the pack's last CTA sets this CUDA graph
  // conditional to (active pairs > switch_limit), then zeroes forward_stats [3].
  unsigned long long switch_handle;
  u32 switch_limit;
};

// Heavy tokens (more active neurons than UpDownParams::heavy_threshold) that the fused
// up_down hands to its second, split pass in one forward; more run unsplit.
constexpr int kHeavySlots = 64;

struct GatePackParams {
  const u16* x;  // [tokens][d_model], bf16
  const u16* w;  // [d_ff][d_model], bf16: Wg (gated) or Wu (non-gated)
  TwellBuffers tw;
  int tokens;
  // gate_gemv: rows of every stored neuron to prefetch into L2 for the up/down kernel
  // behind it: Wu (gated layers) and WdT, [d_ff][d_model]. Null: no prefetch.
  const u16* prefetch_up;
  const u16* prefetch_down_t;
};

// Shared by the up_down, up and down kernels (templates/ffnjit/up_down.cuh).
struct UpDownParams {
  const u16* x;         // [tokens][d_model]
  const u16* w_gate;    // [d_ff][d_model]: Wg (gated) or Wu (non-gated), for overflowed tiles
  const u16* w_up;      // [d_ff][d_model]: Wu (gated; unused when non-gated)
  const u16* w_down_t;  // [d_ff][d_model]: Wd transposed, so a neuron's down row is contiguous
  const u32* counts;    // TwELL counts and entries from the gate
  u32* entries;         // the up kernel writes h over the gate values
  u16* out;             // [tokens][d_model]
  float* partial;       // [splits][tokens][d_model]: fp32 partials of a split up_down
  u32* tickets;         // [tokens]: arrivals per token of a split up_down (zero on entry)
  int tokens;
  // [tokens][d_ff] bf16: the gate values of every tile over capacity (the GEMM gate's
  // output, or the fused gates' spill), read instead of recomputing x . Wg.
  const u16* gate_values;
  // Heavy-token split of the fused up_down with one CTA per token (heavy_splits > 1):
  // the first pass hands tokens with more than heavy_threshold active neurons to the
  // list `heavy` ([0] count, then token ids), the second pass (heavy_pass = 1, grid
  // kHeavySlots x heavy_splits) computes each in heavy_splits CTAs whose fp32
  // partials (heavy_partial [heavy_splits][kHeavySlots][d_model]) meet in split
  // order. Heavy tokens beyond the slots run unsplit in the first pass; which ones is a
  // race, so with more than kHeavySlots heavy tokens in a chunk their outputs are
  // reproducible only to fp32 rounding (docs/kernels.md).
  u32* heavy;
  float* heavy_partial;
  int heavy_splits, heavy_threshold, heavy_pass;
};

// TwELL packing of a gate computed elsewhere (cuBLASLt GEMM with ReLU epilogue).
struct PackParams {
  const u16* g;  // [tokens][d_ff], bf16
  TwellBuffers tw;
  int tokens;
};

struct TransposeParams {
  const u16* in;  // [rows][cols]
  u16* out;       // [cols][rows]
  int rows, cols;
};

struct DenseActParams {
  const u16* gu;  // gated: [tokens][2 * d_ff] = [x Wg^T | x Wu^T]; non-gated: [tokens][d_ff]
  u16* h;         // [tokens][d_ff]
  i64 tokens;
  // Gated, when set: x Wu^T [tokens][d_ff] apart from the gate, which `gu` then holds
  // alone ([tokens][d_ff]; the dense switch's up/down behind the GEMM gate). h may be u.
  const u16* u;
};

}  // namespace ffnjit

namespace ffnjit {

// Serving counters accumulated from a forward's TwELL counts (docs/runtime.md).
struct StatsParams {
  const u32* counts;   // [tokens][n_tiles]
  const u32* entries;  // [tokens][n_tiles][capacity]
  u64* token_hist;     // [d_ff + 1]: tokens by active neurons
  u64* tile_hist;      // [n_tiles][tile_n + 1]: (token, tile) pairs by active neurons, per tile
  u64* neuron_active;  // [d_ff]: tokens in which the neuron fired (stored entries only)
  int tokens;
};

}  // namespace ffnjit
