// The sparse FFN forward on the caller's stream: the gate (gate_pack, gate_gemv, or a
// cuBLASLt GEMM + pack) writes the TwELL, then up_down (or up + down) reads it.
// No allocation and no synchronization, so a forward can be captured in a CUDA graph.
#pragma once

#include <cuda.h>

#include <string>
#include <vector>

#include "codegen/kernel_spec.hpp"
#include "runtime/kernels.hpp"

namespace ffnjit {

// Device weights of one layer as the kernels read them. w_down_t is Wd transposed
// ([d_ff][d_model]), prepared once at registration (see prepare_down_transposed).
struct FfnDeviceWeights {
  CUdeviceptr w_gate = 0;    // Wg [d_ff][d_model] (unused when non-gated)
  CUdeviceptr w_up = 0;      // Wu [d_ff][d_model]
  CUdeviceptr w_down_t = 0;  // WdT [d_ff][d_model]
  LayerShape layer;          // its bias flags say which of the biases below are set
  CUdeviceptr gate_bias = 0;  // bf16 [d_ff]: gate_proj.bias (gated layers)
  CUdeviceptr up_bias = 0;    // bf16 [d_ff]: up_proj.bias / fc1.bias
  CUdeviceptr down_bias = 0;  // bf16 [d_model]: down_proj.bias / fc2.bias
  float threshold = 0.0f;     // Activation::kFatRelu: active iff z > threshold
  // uint32 that accumulates overflowed (token, tile) pairs across calls (a layer's
  // serving counter, never reset by a forward). 0: use the workspace's counter,
  // which each forward zeroes first (one extra memset node).
  CUdeviceptr overflow_counter = 0;
};

// The kernels of one sparse forward; all share layer, arch and sparsity.
struct SparseFfnConfig {
  KernelSpec gate;     // gate_pack, gate_gemv, or pack behind a cuBLASLt GEMM (docs/kernels.md)
  KernelSpec up;       // up: runs before a down kernel on gated layers; unused otherwise
  KernelSpec up_down;  // up_down (fused), or down
  // Launch parameters, not part of any kernel's code (docs/kernels.md):
  // - heavy_splits > 1: tokens with more than heavy_threshold active neurons are spread
  //   over heavy_splits CTAs. The fused up_down with one CTA per token hands them to a
  //   second pass (heavy_split()); the fused up_down split over a cluster (sm_90a, decode)
  //   launches heavy_groups() clusters per token, all of which take a heavy token's
  //   tiles (heavy_splits is then rounded down to whole clusters).
  // - switch_active > 0: the device-side dense switch: under a CUDA graph, a forward
  //   (chunk) whose active (token, neuron) pairs exceed switch_active x tokens runs the
  //   dense up/down instead of the sparse one (the gate's counts decide; no host sync).
  int heavy_splits = 0, heavy_threshold = 0;
  int switch_active = 0;
  Status validate() const;
  bool gemm_gate() const { return gate.family == Family::kPack; }
  bool split_up_down() const { return up_down.family == Family::kDown; }
  bool heavy_split() const {
    return heavy_splits > 1 && up_down.family == Family::kUpDown && up_down.tile.splits == 1 &&
           up_down.arch == Arch::kSm90a;
  }
  // Clusters per token of the fused up_down split over a cluster: 1 (no groups) up to
  // kMaxHeavyGroups; a forward of `rows` tokens launches heavy_groups(rows) of them.
  int heavy_groups() const;
  int heavy_groups(int rows) const;
  // The generated kernels a forward launches, in order.
  std::vector<KernelSpec> kernel_specs() const;
  // The pipeline for logs: "cuBLASLt GEMM + <kernel> + ..." in launch order.
  std::string describe() const;
};

// Tokens per chunk of a forward: the gate and up/down run chunk by chunk, so the gate
// values kept for tiles over capacity (and the GEMM gate's output) need this many rows.
inline constexpr int kGateGemmRows = 8192;
// Heavy-token split defaults. One CTA per token: a second pass gives each heavy token
// one CTA per tile (at most kMaxHeavySplits), and a token is heavy from n_tiles x capacity
// / kHeavyThresholdDivisor active neurons (at least 64; 85 at d_ff 5632, capacity 31).
// On the reference model (H200) a token of 300-1800 active neurons in one 128-thread CTA,
// or in 8 CTAs, was the straggler of the whole up/down at 128-2048 tokens (layer 0, 2048
// tokens: 335 us against 201 dense). The decode clusters use heavy groups (below) from
// n_tiles x capacity / kDecodeHeavyThresholdDivisor (341).
inline constexpr int kMaxHeavySplits = 64;
inline constexpr int kHeavyThresholdDivisor = 16;
inline constexpr int kDecodeHeavyThresholdDivisor = 4;
// Buckets from 1025 tokens keep 8 CTAs per heavy token from the decode threshold: with one
// CTA per tile from 85 active neurons the reference model's untuned forward at 8192 tokens
// fell from 1.28x to 0.86x dense (H200), as the second pass took 64 of its many heavy tokens.
inline constexpr int kLargeHeavyMinTokens = 1025;
inline constexpr int kLargeHeavySplits = 8;
// Heavy groups (the decode up_down's clusters per token): at most 8 (a heavy token's
// tiles over 8 x 8 CTAs), and at most kHeavyGroupCtas CTAs in the launch: a non-heavy
// token's extra clusters only read its counts and return, about one wave of such CTAs
// (132 SMs x 8) at 16 tokens.
inline constexpr int kMaxHeavyGroups = 8;
inline constexpr int kHeavyGroupCtas = 1024;
// The tuner tries the dense switch for buckets from this many tokens (docs/kernels.md;
// off by default: its conditional node costs more than it saves on typical batches).
inline constexpr int kSwitchMinTokens = 65;
// Up to this many tokens gate_gemv (column blocks of bm <= 16) prefetches the active
// neurons' Wu and WdT rows into L2 for the up/down kernel behind it (docs/kernels.md):
// on H100 it helped at 1 token (1.88 -> 1.94x at k = 29, 1.43 -> 1.47x at k = 282) and
// hurt at 16 (1.67 -> 1.58x at k = 29), where the rows compete with Wg's stream.
inline constexpr int kPrefetchRowsTokens = 1;

// The untuned default for a token count or a bucket (docs/kernels.md explains the heuristic).
SparseFfnConfig default_sparse_config(const LayerShape& layer, Arch arch, int tokens, const Sparsity& sparsity = {});
SparseFfnConfig default_sparse_config(const LayerShape& layer, Arch arch, const BatchBucket& bucket,
                                      const Sparsity& sparsity = {});
// The default launch parameters (heavy split, dense switch) for the config's kernels.
void set_default_launch(SparseFfnConfig& c);

// Workspace for `tokens` tokens: TwELL counts and entries, the overflow counter, the
// per-token tickets and split partials, and the GEMM gate's output and cuBLASLt
// workspace; 256-byte aligned pieces.
size_t sparse_workspace_bytes(const SparseFfnConfig& cfg, int tokens);

// Where the workspace's overflow counter lives (a uint32: (token, tile) pairs that
// exceeded capacity in the last forward, when FfnDeviceWeights::overflow_counter is 0).
size_t overflow_counter_offset(const SparseFfnConfig& cfg, int tokens);

// The loaded kernels of a config, resolved once so a forward does no lookups.
struct SparseFfnKernels {
  const LoadedKernel* gate = nullptr;
  const LoadedKernel* up = nullptr;  // null unless split up/down on a gated layer
  const LoadedKernel* up_down = nullptr;
  LtGemms* gemms = nullptr;  // null unless the gate is a GEMM
};
Expected<SparseFfnKernels> resolve_kernels(KernelTable& kernels, const SparseFfnConfig& cfg);

// out[tokens][d_model] = FFN(x[tokens][d_model]) with resolved kernels: the hot path.
Status sparse_ffn_forward(const SparseFfnKernels& k, const SparseFfnConfig& cfg, const FfnDeviceWeights& w,
                          CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace, CUstream stream);

// out[tokens][d_model] = FFN(x[tokens][d_model]). Enqueues only; `workspace` must
// hold sparse_workspace_bytes(cfg, tokens).
Status sparse_ffn_forward(KernelTable& kernels, const SparseFfnConfig& cfg, const FfnDeviceWeights& w,
                          CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace, CUstream stream);

// Where the dense switch's up buffer lies in the workspace (gated layers; for tests,
// which poison it to see which branch ran).
size_t dense_switch_up_offset(const SparseFfnConfig& cfg, int tokens);

// Where a forward left its TwELL in the workspace (for the serving counters).
struct TwellView {
  CUdeviceptr counts = 0, entries = 0;
};
TwellView twell_in_workspace(const SparseFfnConfig& cfg, int tokens, CUdeviceptr workspace);

// The pieces of a forward, for the dense switch (runtime/layer.cpp), which puts a
// conditional graph node between each chunk's gate and its up/down:
// begin zeroes what a forward accumulates; gate_chunk and up_down_chunk run tokens
// [r0, r0 + rows) (rows <= kGateGemmRows). With `decide`, the chunk's gate (its last CTA)
// sets the conditional `handle` to 1 when its active pairs exceed `limit`.
struct SwitchDecision {
  unsigned long long handle = 0;
  unsigned limit = 0;
};
Status sparse_forward_begin(const SparseFfnConfig& cfg, const FfnDeviceWeights& w, int tokens, CUdeviceptr workspace,
                            bool switched, CUstream stream);
Status sparse_gate_chunk(const SparseFfnKernels& k, const SparseFfnConfig& cfg, const FfnDeviceWeights& w,
                         CUdeviceptr x, int tokens, int r0, int rows, CUdeviceptr workspace,
                         const SwitchDecision* decide, CUstream stream);
Status sparse_up_down_chunk(const SparseFfnKernels& k, const SparseFfnConfig& cfg, const FfnDeviceWeights& w,
                            CUdeviceptr x, CUdeviceptr out, int tokens, int r0, int rows, CUdeviceptr workspace,
                            CUstream stream);
// The dense up/down of a chunk whose gate was the GEMM gate (its ReLU output is kept):
// U = x Wu^T, H = G * U, out = H Wd^T on cuBLASLt (wd: Wd [d_model][d_ff]).
Status dense_up_down_chunk(const SparseFfnKernels& k, const SparseFfnConfig& cfg, const FfnDeviceWeights& w,
                           CUdeviceptr wd, const LoadedKernel& act, CUdeviceptr x, CUdeviceptr out, int tokens, int r0,
                           int rows, CUdeviceptr workspace, CUstream stream);

// The two halves of sparse_ffn_forward, for benchmarks that time them separately:
// the gate (writes the TwELL workspace) and up/down (or up + down) reading it.
Status sparse_ffn_gate(KernelTable& kernels, const SparseFfnConfig& cfg, const FfnDeviceWeights& w, CUdeviceptr x,
                       int tokens, CUdeviceptr workspace, CUstream stream);
Status sparse_ffn_gate(const SparseFfnKernels& k, const SparseFfnConfig& cfg, const FfnDeviceWeights& w,
                       CUdeviceptr x, int tokens, CUdeviceptr workspace, CUstream stream);
Status sparse_ffn_up_down(const SparseFfnKernels& k, const SparseFfnConfig& cfg, const FfnDeviceWeights& w,
                          CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace, CUstream stream);
Status sparse_ffn_up_down(KernelTable& kernels, const SparseFfnConfig& cfg, const FfnDeviceWeights& w, CUdeviceptr x,
                          CUdeviceptr out, int tokens, CUdeviceptr workspace, CUstream stream);

// WdT = Wd^T on the device ([d_model][d_ff] -> [d_ff][d_model]).
Status transpose_down(KernelTable& kernels, Arch arch, CUdeviceptr wd, CUdeviceptr wd_t, int d_model, int d_ff,
                      CUstream stream);

}  // namespace ffnjit
