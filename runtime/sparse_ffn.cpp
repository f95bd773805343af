// The sparse FFN forward: gate (gate_pack, gate_gemv, or GEMM + pack) -> up_down (or
// up + down) on the caller's stream.
#include "runtime/sparse_ffn.hpp"

#include <algorithm>

#include "templates/ffnjit/params.h"

namespace ffnjit {
namespace {

size_t align256(size_t x) { return (x + 255) & ~size_t(255); }

struct Layout {
  size_t counts = 0, entries = 0, overflow = 0, tickets = 0, heavy = 0, heavy_partial = 0, partial = 0, gate_ws = 0,
         gate_out = 0, dense_u = 0, total = 0;
};

// Workspace pieces, 256-byte aligned: TwELL counts and entries; a 256-byte block with the
// overflow counter (offset 0) and the forward's switch counters (offset 16); tickets;
// the heavy-token list and partials; split partials; the GEMM gate's cuBLASLt workspace;
// the gate values of one chunk (GEMM output, or the fused gates' spill); the dense
// switch's up buffer.
Layout layout(const SparseFfnConfig& cfg, int tokens) {
  const size_t m = size_t(tokens), nt = size_t(cfg.gate.n_tiles()), cap = size_t(cfg.gate.sparsity.capacity);
  const size_t dm = size_t(cfg.gate.layer.d_model), dff = size_t(cfg.gate.layer.d_ff);
  const size_t chunk = std::min<size_t>(m, kGateGemmRows);
  Layout l;
  l.counts = 0;
  l.entries = align256(m * nt * 4);
  l.overflow = l.entries + align256(m * nt * cap * 4);
  l.tickets = l.overflow + 256;
  l.heavy = l.tickets + align256(m * 4);
  l.heavy_partial = l.heavy + (cfg.heavy_split() ? align256((1 + kHeavySlots) * 4) : 0);
  l.partial = l.heavy_partial + (cfg.heavy_split() ? align256(size_t(cfg.heavy_splits) * kHeavySlots * dm * 4) : 0);
  // Split partials: [splits][tokens][d_model], or one per heavy group when there are more.
  const int splits = std::max(cfg.up_down.tile.splits, cfg.heavy_groups());
  l.gate_ws = l.partial + (!cfg.split_up_down() && splits > 1 ? align256(size_t(splits) * chunk * dm * 4) : 0);
  const bool lt = cfg.gemm_gate();
  l.gate_out = l.gate_ws + (lt ? LtGemms::kWorkspace : 0);
  l.dense_u = l.gate_out + align256(chunk * dff * 2);
  l.total = l.dense_u + (lt && cfg.switch_active > 0 && cfg.gate.layer.gated ? align256(chunk * dff * 2) : 0);
  return l;
}

unsigned ceil_div(long long a, long long b) { return unsigned((a + b - 1) / b); }

bool same_math(const LayerShape& a, const LayerShape& b) {
  return a.d_model == b.d_model && a.d_ff == b.d_ff && a.gated == b.gated &&
         a.activation == b.activation && a.gate_bias == b.gate_bias && a.up_bias == b.up_bias &&
         a.down_bias == b.down_bias;
}

bool same_layer(const KernelSpec& a, const KernelSpec& b) {
  return a.sparsity.tile_n == b.sparsity.tile_n && a.sparsity.capacity == b.sparsity.capacity &&
         same_math(a.layer, b.layer);
}

// The kernels were generated for the weights' layer: a bias they would add is there,
// and one the layer has is never dropped.
Status check_weights(const SparseFfnConfig& cfg, const FfnDeviceWeights& w) {
  const LayerShape& L = w.layer;
  if (!same_math(cfg.gate.layer, L))
    return internal_error(
        "sparse config was made for another layer (activation, biases or shape) than its weights");
  if ((L.gate_bias && !w.gate_bias) || (L.up_bias && !w.up_bias) || (L.down_bias && !w.down_bias))
    return internal_error("layer has a bias flag without its device pointer");
  return {};
}

}  // namespace

Status SparseFfnConfig::validate() const {
  if ((gate.family != Family::kGatePack && gate.family != Family::kGateGemv && gate.family != Family::kPack) ||
      (up_down.family != Family::kUpDown && up_down.family != Family::kDown) || up.family != Family::kUp)
    return internal_error("sparse config has kernels of the wrong families");
  for (const KernelSpec& s : kernel_specs()) FFNJIT_TRY(s.validate());
  if (!same_layer(gate, up_down) || !same_layer(gate, up))
    return internal_error("sparse config kernels disagree on layer or TwELL layout");
  if (heavy_splits < 0 || heavy_splits > kMaxHeavySplits || heavy_threshold < 0 ||
      switch_active < 0)
    return user_error("heavy_splits must be 0.." + std::to_string(kMaxHeavySplits) +
                      " and heavy_threshold, switch_active >= 0");
  return {};
}

int SparseFfnConfig::heavy_groups() const {
  const int cluster = up_down.family == Family::kUpDown ? up_down.cluster_size() : 1;
  if (cluster <= 1 || heavy_splits <= cluster) return 1;
  return std::min(kMaxHeavyGroups, heavy_splits / cluster);
}

int SparseFfnConfig::heavy_groups(int rows) const {
  const int g = heavy_groups();
  if (g == 1 || rows <= 0) return 1;
  const long long per_group = (long long)rows * up_down.tile.splits;
  return int(std::clamp<long long>(kHeavyGroupCtas / per_group, 1, g));
}

std::vector<KernelSpec> SparseFfnConfig::kernel_specs() const {
  std::vector<KernelSpec> s = {gate};
  if (split_up_down() && gate.layer.gated) s.push_back(up);
  s.push_back(up_down);
  return s;
}

std::string SparseFfnConfig::describe() const {
  std::string n = gemm_gate() ? "cuBLASLt GEMM" : "";
  for (const auto& s : kernel_specs()) n += (n.empty() ? "" : " + ") + s.kernel_name();
  return n;
}

SparseFfnConfig default_sparse_config(const LayerShape& layer, Arch arch, int tokens, const Sparsity& sparsity) {
  return default_sparse_config(layer, arch, BatchBucket{tokens, tokens}, sparsity);
}

SparseFfnConfig default_sparse_config(const LayerShape& layer, Arch arch, const BatchBucket& b,
                                      const Sparsity& sparsity) {
  // Up to 32 tokens: gate_gemv, which streams Wg from every warp (the gate is a
  // matrix-vector product bound by reading Wg). Beyond: the cuBLASLt GEMM gate +
  // pack (flat ~21 us from 32 to 128 tokens on H100, where gate_pack's grid is only
  // n_tiles wide). The fused up_down beats up + down at every size measured once its
  // weight rows stay in L2 (docs/performance.md); up + down remains a tuner candidate.
  SparseFfnConfig c;
  const Family gate = b.max_tokens <= 32 ? Family::kGateGemv : Family::kPack;
  c.gate = default_spec(gate, layer, arch, b, sparsity);
  c.up = default_spec(Family::kUp, layer, arch, b, sparsity);
  c.up_down = default_spec(Family::kUpDown, layer, arch, b, sparsity);
  set_default_launch(c);
  return c;
}

void set_default_launch(SparseFfnConfig& c) {
  // One CTA per token: a second pass of one CTA per tile for each heavy token. Split over
  // a cluster (decode): enough clusters that a heavy token's tiles get one CTA each.
  // Large batches (many waves of CTAs, where one token is no straggler) keep the
  // earlier split: kLargeHeavySplits CTAs per heavy token from the decode threshold.
  const int cluster = c.up_down.family == Family::kUpDown ? c.up_down.cluster_size() : 1;
  const int tiles = c.up_down.n_tiles();
  const bool large = c.up_down.bucket.min_tokens >= kLargeHeavyMinTokens;
  if (cluster > 1)
    c.heavy_splits = cluster * std::min(kMaxHeavyGroups, (tiles + cluster - 1) / cluster);
  else
    c.heavy_splits = c.up_down.family == Family::kUpDown && c.up_down.tile.splits == 1 &&
                             c.up_down.arch == Arch::kSm90a
                         ? std::min(large ? kLargeHeavySplits : tiles, kMaxHeavySplits)
                         : 0;
  const int stored = c.gate.n_tiles() * c.gate.sparsity.capacity;
  c.heavy_threshold = std::max(
      64, stored / (cluster > 1 || large ? kDecodeHeavyThresholdDivisor : kHeavyThresholdDivisor));
  // The dense switch is off by default: its conditional node cost ~19 us per forward on
  // H200 (measured 2026-12-02: 128 tokens, 51 vs 32 us), more than it saves on the
  // batches the defaults serve. The tuner enables it where its cost is within 2%.
  c.switch_active = 0;
}

size_t sparse_workspace_bytes(const SparseFfnConfig& cfg, int tokens) { return layout(cfg, tokens).total; }

size_t overflow_counter_offset(const SparseFfnConfig& cfg, int tokens) { return layout(cfg, tokens).overflow; }

size_t dense_switch_up_offset(const SparseFfnConfig& cfg, int tokens) { return layout(cfg, tokens).dense_u; }

TwellView twell_in_workspace(const SparseFfnConfig& cfg, int tokens, CUdeviceptr workspace) {
  const Layout l = layout(cfg, tokens);
  return {workspace + l.counts, workspace + l.entries};
}

Expected<SparseFfnKernels> resolve_kernels(KernelTable& kernels, const SparseFfnConfig& cfg) {
  SparseFfnKernels k;
  auto gate = kernels.get(cfg.gate);
  FFNJIT_TRY(gate);
  k.gate = *gate;
  if (cfg.gemm_gate()) {
    auto g = kernels.gemms();
    FFNJIT_TRY(g);
    k.gemms = *g;
  }
  if (cfg.split_up_down() && cfg.gate.layer.gated) {
    auto up = kernels.get(cfg.up);
    FFNJIT_TRY(up);
    k.up = *up;
  }
  auto up_down = kernels.get(cfg.up_down);
  FFNJIT_TRY(up_down);
  k.up_down = *up_down;
  return k;
}

namespace {

// The TwELL buffers of tokens [r0, ...) in the workspace.
TwellBuffers twell_at(const SparseFfnConfig& cfg, const Layout& l, CUdeviceptr overflow, CUdeviceptr workspace, int r0) {
  const size_t nt = size_t(cfg.gate.n_tiles()), cap = size_t(cfg.gate.sparsity.capacity);
  TwellBuffers tw{};
  tw.counts = reinterpret_cast<u32*>(workspace + l.counts) + size_t(r0) * nt;
  tw.entries = reinterpret_cast<u32*>(workspace + l.entries) + size_t(r0) * nt * cap;
  tw.overflow = reinterpret_cast<u32*>(overflow);
  tw.tickets = reinterpret_cast<u32*>(workspace + l.tickets) + r0;
  tw.gate_spill = cfg.gemm_gate() ? nullptr : reinterpret_cast<u16*>(workspace + l.gate_out);
  tw.heavy = cfg.heavy_split() ? reinterpret_cast<u32*>(workspace + l.heavy) : nullptr;
  return tw;
}

CUdeviceptr overflow_ptr(const FfnDeviceWeights& w, const Layout& l, CUdeviceptr workspace) {
  return w.overflow_counter ? w.overflow_counter : workspace + l.overflow;
}

Status launch_gate(const SparseFfnKernels& k, const SparseFfnConfig& cfg, const Layout& l, const FfnDeviceWeights& w,
                   CUdeviceptr x, int r0, int rows, CUdeviceptr workspace, const SwitchDecision* decide,
                   CUstream stream) {
  const CUdeviceptr gate_w = w.layer.gated ? w.w_gate : w.w_up;
  TwellBuffers tw = twell_at(cfg, l, overflow_ptr(w, l, workspace), workspace, r0);
  const CUdeviceptr xr = x + size_t(r0) * cfg.gate.layer.d_model * 2;
  if (!cfg.gemm_gate()) {
    // Decode: gate_gemv prefetches the active neurons' up and down rows into L2 (a few
    // tokens' rows fit there; at more tokens the gathers are bandwidth-, not latency-bound).
    const bool prefetch = cfg.gate.family == Family::kGateGemv && rows <= kPrefetchRowsTokens;
    // The spill is chunk-relative, like the token indices the kernels see.
    GatePackParams gp{reinterpret_cast<const u16*>(xr),
                      reinterpret_cast<const u16*>(gate_w),
                      reinterpret_cast<const u16*>(w.layer.gated ? w.gate_bias : w.up_bias),
                      w.threshold,
                      tw,
                      rows,
                      reinterpret_cast<const u16*>(prefetch && w.layer.gated ? w.w_up : 0),
                      reinterpret_cast<const u16*>(prefetch ? w.w_down_t : 0)};
    // gate_pack with splits > 1: a cluster of CTAs per tile along x.
    return launch(*k.gate, unsigned(cfg.gate.n_tiles() * cfg.gate.cluster_size()), ceil_div(rows, cfg.gate.tile.bm),
                  &gp, stream);
  }
  if (!k.gemms) return internal_error("GEMM gate without resolved cuBLASLt plans");
  const int dm = cfg.gate.layer.d_model, dff = cfg.gate.layer.d_ff;
  // The GEMM writes z = bf16(x . w + b) (bias epilogue, no ReLU): the pack kernel applies
  // the activation itself, so its decision is the fused gates' code (docs/kernels.md).
  FFNJIT_TRY(k.gemms->run(rows, dff, dm, false, w.layer.gated ? w.gate_bias : w.up_bias, xr, gate_w,
                          workspace + l.gate_out, workspace + l.gate_ws, stream));
  if (decide) {
    tw.forward_stats = reinterpret_cast<u32*>(workspace + l.overflow) + 4;
    tw.switch_handle = decide->handle, tw.switch_limit = decide->limit;
  }
  PackParams pp{reinterpret_cast<const u16*>(workspace + l.gate_out), w.threshold, tw, rows};
  return launch_dependent(*k.gate, unsigned(rows), 1, &pp, stream);
}

Status launch_up_down(const SparseFfnKernels& k, const SparseFfnConfig& cfg, const Layout& l,
                      const FfnDeviceWeights& w, CUdeviceptr x, CUdeviceptr out, int r0, int rows,
                      CUdeviceptr workspace, CUstream stream) {
  const size_t nt = size_t(cfg.gate.n_tiles()), cap = size_t(cfg.gate.sparsity.capacity);
  const size_t dm = size_t(cfg.gate.layer.d_model);
  UpDownParams up{reinterpret_cast<const u16*>(x + size_t(r0) * dm * 2),
                  reinterpret_cast<const u16*>(w.layer.gated ? w.w_gate : w.w_up),
                  reinterpret_cast<const u16*>(w.w_up),
                  reinterpret_cast<const u16*>(w.w_down_t),
                  reinterpret_cast<const u16*>(w.layer.gated ? w.gate_bias : w.up_bias),
                  reinterpret_cast<const u16*>(w.layer.gated ? w.up_bias : 0),
                  reinterpret_cast<const u16*>(w.down_bias),
                  w.threshold,
                  reinterpret_cast<const u32*>(workspace + l.counts) + size_t(r0) * nt,
                  reinterpret_cast<u32*>(workspace + l.entries) + size_t(r0) * nt * cap,
                  reinterpret_cast<u16*>(out + size_t(r0) * dm * 2),
                  reinterpret_cast<float*>(workspace + l.partial),
                  reinterpret_cast<u32*>(workspace + l.tickets) + r0,
                  rows,
                  reinterpret_cast<const u16*>(workspace + l.gate_out),
                  cfg.heavy_split() ? reinterpret_cast<u32*>(workspace + l.heavy) : nullptr,
                  reinterpret_cast<float*>(workspace + l.heavy_partial),
                  cfg.heavy_split() ? cfg.heavy_splits : 0,
                  cfg.heavy_threshold,
                  0};
  if (k.up) FFNJIT_TRY(launch_dependent(*k.up, unsigned(rows), unsigned(cfg.up.tile.splits), &up, stream));
  // Heavy groups: whole clusters per token along y (the kernel reads their number from the grid).
  const unsigned groups = unsigned(cfg.heavy_groups(rows));
  FFNJIT_TRY(launch_dependent(*k.up_down, unsigned(rows),
                              unsigned(cfg.up_down.tile.splits) * groups, &up, stream));
  if (!cfg.heavy_split()) return {};
  // The heavy tokens the first pass listed, each split over heavy_splits CTAs.
  up.heavy_pass = 1;
  return launch_dependent(*k.up_down, unsigned(kHeavySlots), unsigned(cfg.heavy_splits), &up, stream);
}

// Tokens [r0, r0 + rows) of each chunk.
template <class F>
Status for_chunks(int tokens, F&& f) {
  for (int r0 = 0; r0 < tokens; r0 += kGateGemmRows) FFNJIT_TRY(f(r0, std::min(kGateGemmRows, tokens - r0)));
  return {};
}

Status begin(const SparseFfnConfig& cfg, const Layout& l, const FfnDeviceWeights& w, CUdeviceptr workspace,
             bool switched, CUstream stream) {
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  (void)cfg;
  // Without a layer counter the forward counts its overflow in the workspace; the
  // switch's counters (after the overflow word) start at zero.
  if (!w.overflow_counter) FFNJIT_CU(cuMemsetD32Async(workspace + l.overflow, 0, 1, stream));
  if (switched) FFNJIT_CU(cuMemsetD32Async(workspace + l.overflow + 16, 0, 3, stream));
  return {};
}

}  // namespace

Status sparse_ffn_forward(const SparseFfnKernels& k, const SparseFfnConfig& cfg, const FfnDeviceWeights& w,
                          CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace, CUstream stream) {
  if (tokens == 0) return {};
  FFNJIT_TRY(check_weights(cfg, w));
  const Layout l = layout(cfg, tokens);
  FFNJIT_TRY(begin(cfg, l, w, workspace, false, stream));
  return for_chunks(tokens, [&](int r0, int rows) -> Status {
    FFNJIT_TRY(launch_gate(k, cfg, l, w, x, r0, rows, workspace, nullptr, stream));
    return launch_up_down(k, cfg, l, w, x, out, r0, rows, workspace, stream);
  });
}

Status sparse_ffn_gate(const SparseFfnKernels& k, const SparseFfnConfig& cfg, const FfnDeviceWeights& w,
                       CUdeviceptr x, int tokens, CUdeviceptr workspace, CUstream stream) {
  if (tokens == 0) return {};
  const Layout l = layout(cfg, tokens);
  FFNJIT_TRY(begin(cfg, l, w, workspace, false, stream));
  return for_chunks(tokens, [&](int r0, int rows) {
    return launch_gate(k, cfg, l, w, x, r0, rows, workspace, nullptr, stream);
  });
}

Status sparse_ffn_up_down(const SparseFfnKernels& k, const SparseFfnConfig& cfg, const FfnDeviceWeights& w,
                          CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace, CUstream stream) {
  if (tokens == 0) return {};
  const Layout l = layout(cfg, tokens);
  return for_chunks(tokens, [&](int r0, int rows) {
    return launch_up_down(k, cfg, l, w, x, out, r0, rows, workspace, stream);
  });
}

Status sparse_forward_begin(const SparseFfnConfig& cfg, const FfnDeviceWeights& w, int tokens, CUdeviceptr workspace,
                            bool switched, CUstream stream) {
  return begin(cfg, layout(cfg, tokens), w, workspace, switched, stream);
}

Status sparse_gate_chunk(const SparseFfnKernels& k, const SparseFfnConfig& cfg, const FfnDeviceWeights& w,
                         CUdeviceptr x, int tokens, int r0, int rows, CUdeviceptr workspace,
                         const SwitchDecision* decide, CUstream stream) {
  return launch_gate(k, cfg, layout(cfg, tokens), w, x, r0, rows, workspace, decide, stream);
}

Status sparse_up_down_chunk(const SparseFfnKernels& k, const SparseFfnConfig& cfg, const FfnDeviceWeights& w,
                            CUdeviceptr x, CUdeviceptr out, int tokens, int r0, int rows, CUdeviceptr workspace,
                            CUstream stream) {
  return launch_up_down(k, cfg, layout(cfg, tokens), w, x, out, r0, rows, workspace, stream);
}

Status dense_up_down_chunk(const SparseFfnKernels& k, const SparseFfnConfig& cfg, const FfnDeviceWeights& w,
                           CUdeviceptr wd, const LoadedKernel& act, CUdeviceptr x, CUdeviceptr out, int tokens, int r0,
                           int rows, CUdeviceptr workspace, CUstream stream) {
  if (!k.gemms || !cfg.gemm_gate()) return internal_error("the dense switch needs the GEMM gate's output");
  const Layout l = layout(cfg, tokens);
  const int dm = cfg.gate.layer.d_model, dff = cfg.gate.layer.d_ff;
  const CUdeviceptr xr = x + size_t(r0) * dm * 2, outr = out + size_t(r0) * dm * 2;
  // The GEMM gate left z (bias included) in gate_out: h = act(z) * (x Wu^T + bu), or
  // act(z) in place when non-gated, then out = h Wd^T + bd, as the dense FFN computes it.
  const CUdeviceptr z = workspace + l.gate_out, ws = workspace + l.gate_ws;
  const CUdeviceptr h = cfg.gate.layer.gated ? workspace + l.dense_u : z;
  if (cfg.gate.layer.gated) FFNJIT_TRY(k.gemms->run(rows, dff, dm, false, w.up_bias, xr, w.w_up, h, ws, stream));
  DenseActParams p{reinterpret_cast<const u16*>(z), reinterpret_cast<u16*>(h), rows, w.threshold,
                   cfg.gate.layer.gated ? reinterpret_cast<const u16*>(h) : nullptr};
  const long long vecs = (long long)rows * dff / 8;
  FFNJIT_TRY(launch(act, unsigned(std::min<long long>((vecs + 255) / 256, 132LL * 16)), 1, &p, stream));
  return k.gemms->run(rows, dm, dff, false, w.down_bias, h, wd, outr, ws, stream);
}

Status sparse_ffn_gate(KernelTable& kernels, const SparseFfnConfig& cfg, const FfnDeviceWeights& w, CUdeviceptr x,
                       int tokens, CUdeviceptr workspace, CUstream stream) {
  if (tokens == 0) return {};
  FFNJIT_TRY(check_weights(cfg, w));
  auto k = resolve_kernels(kernels, cfg);
  FFNJIT_TRY(k);
  return sparse_ffn_gate(*k, cfg, w, x, tokens, workspace, stream);
}

Status sparse_ffn_up_down(KernelTable& kernels, const SparseFfnConfig& cfg, const FfnDeviceWeights& w, CUdeviceptr x,
                          CUdeviceptr out, int tokens, CUdeviceptr workspace, CUstream stream) {
  if (tokens == 0) return {};
  FFNJIT_TRY(check_weights(cfg, w));
  auto k = resolve_kernels(kernels, cfg);
  FFNJIT_TRY(k);
  return sparse_ffn_up_down(*k, cfg, w, x, out, tokens, workspace, stream);
}

Status sparse_ffn_forward(KernelTable& kernels, const SparseFfnConfig& cfg, const FfnDeviceWeights& w,
                          CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace, CUstream stream) {
  auto k = resolve_kernels(kernels, cfg);
  FFNJIT_TRY(k);
  return sparse_ffn_forward(*k, cfg, w, x, out, tokens, workspace, stream);
}

Status transpose_down(KernelTable& kernels, Arch arch, CUdeviceptr wd, CUdeviceptr wd_t, int d_model, int d_ff,
                      CUstream stream) {
  KernelSpec spec = default_spec(Family::kTranspose, {d_model, d_ff, true}, arch, {1, 1});
  auto k = kernels.get(spec);
  FFNJIT_TRY(k);
  TransposeParams p{reinterpret_cast<const u16*>(wd), reinterpret_cast<u16*>(wd_t), d_model, d_ff};
  return launch(**k, ceil_div(d_ff, 32), ceil_div(d_model, 32), &p, stream, 32, 8);
}

}  // namespace ffnjit
