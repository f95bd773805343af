// The sparse FFN forward: gate_pack -> up_down (-> reduce) on the caller's stream.
#include "runtime/sparse_ffn.hpp"

#include "templates/ffnjit/params.h"

namespace ffnjit {
namespace {

size_t align256(size_t x) { return (x + 255) & ~size_t(255); }

struct Layout {
  size_t counts = 0, entries = 0, overflow = 0, partial = 0, total = 0;
};

Layout layout(const SparseFfnConfig& cfg, int tokens) {
  const size_t m = size_t(tokens), nt = size_t(cfg.gate.n_tiles()), cap = size_t(cfg.gate.sparsity.capacity);
  Layout l;
  l.counts = 0;
  l.entries = align256(m * nt * 4);
  l.overflow = l.entries + align256(m * nt * cap * 4);
  l.partial = l.overflow + 256;
  const int splits = cfg.up_down.tile.splits;
  l.total = l.partial + (splits > 1 ? align256(size_t(splits) * m * cfg.gate.layer.d_model * 4) : 0);
  return l;
}

unsigned ceil_div(long long a, long long b) { return unsigned((a + b - 1) / b); }

}  // namespace

Status SparseFfnConfig::validate() const {
  if (gate.family != Family::kGatePack || up_down.family != Family::kUpDown || reduce.family != Family::kReduce)
    return internal_error("sparse config has kernels of the wrong families");
  FFNJIT_TRY(gate.validate());
  FFNJIT_TRY(up_down.validate());
  FFNJIT_TRY(reduce.validate());
  if (gate.sparsity.tile_n != up_down.sparsity.tile_n || gate.sparsity.capacity != up_down.sparsity.capacity ||
      gate.layer.d_model != up_down.layer.d_model || gate.layer.d_ff != up_down.layer.d_ff ||
      gate.layer.gated != up_down.layer.gated || reduce.tile.splits != up_down.tile.splits)
    return internal_error("sparse config kernels disagree on layer, TwELL layout or splits");
  return {};
}

SparseFfnConfig default_sparse_config(const LayerShape& layer, Arch arch, int tokens, const Sparsity& sparsity) {
  return default_sparse_config(layer, arch, BatchBucket{tokens, tokens}, sparsity);
}

SparseFfnConfig default_sparse_config(const LayerShape& layer, Arch arch, const BatchBucket& b,
                                      const Sparsity& sparsity) {
  SparseFfnConfig c;
  c.gate = default_spec(Family::kGatePack, layer, arch, b, sparsity);
  c.up_down = default_spec(Family::kUpDown, layer, arch, b, sparsity);
  c.reduce = default_spec(Family::kReduce, layer, arch, b, sparsity);
  c.reduce.tile.splits = c.up_down.tile.splits;
  return c;
}

size_t sparse_workspace_bytes(const SparseFfnConfig& cfg, int tokens) { return layout(cfg, tokens).total; }

size_t overflow_counter_offset(const SparseFfnConfig& cfg, int tokens) { return layout(cfg, tokens).overflow; }

TwellView twell_in_workspace(const SparseFfnConfig& cfg, int tokens, CUdeviceptr workspace) {
  const Layout l = layout(cfg, tokens);
  return {workspace + l.counts, workspace + l.entries};
}

Expected<SparseFfnKernels> resolve_kernels(KernelTable& kernels, const SparseFfnConfig& cfg) {
  SparseFfnKernels k;
  auto gate = kernels.get(cfg.gate);
  FFNJIT_TRY(gate);
  auto up_down = kernels.get(cfg.up_down);
  FFNJIT_TRY(up_down);
  k.gate = *gate, k.up_down = *up_down;
  if (cfg.up_down.tile.splits > 1) {
    auto reduce = kernels.get(cfg.reduce);
    FFNJIT_TRY(reduce);
    k.reduce = *reduce;
  }
  return k;
}

namespace {

Status launch_gate(const LoadedKernel& gate, const SparseFfnConfig& cfg, const Layout& l, const FfnDeviceWeights& w,
                   CUdeviceptr x, int tokens, CUdeviceptr workspace, CUstream stream) {
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  CUdeviceptr overflow = w.overflow_counter;
  if (!overflow) {
    overflow = workspace + l.overflow;
    FFNJIT_CU(cuMemsetD32Async(overflow, 0, 1, stream));
  }
  const CUdeviceptr gate_w = w.layer.gated ? w.w_gate : w.w_up;
  GatePackParams gp{reinterpret_cast<const uint16_t*>(x), reinterpret_cast<const uint16_t*>(gate_w),
                    {reinterpret_cast<uint32_t*>(workspace + l.counts), reinterpret_cast<uint32_t*>(workspace + l.entries),
                     reinterpret_cast<uint32_t*>(overflow)},
                    tokens};
  return launch(gate, unsigned(cfg.gate.n_tiles()), ceil_div(tokens, cfg.gate.tile.bm), &gp, stream);
}

Status launch_up_down(const SparseFfnKernels& k, const SparseFfnConfig& cfg, const Layout& l,
                      const FfnDeviceWeights& w, CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace,
                      CUstream stream) {
  const int splits = cfg.up_down.tile.splits;
  UpDownParams up{reinterpret_cast<const uint16_t*>(x),
                  reinterpret_cast<const uint16_t*>(w.layer.gated ? w.w_gate : w.w_up),
                  reinterpret_cast<const uint16_t*>(w.w_up),
                  reinterpret_cast<const uint16_t*>(w.w_down_t),
                  reinterpret_cast<const uint32_t*>(workspace + l.counts),
                  reinterpret_cast<const uint32_t*>(workspace + l.entries),
                  reinterpret_cast<uint16_t*>(out),
                  reinterpret_cast<float*>(workspace + l.partial),
                  tokens};
  FFNJIT_TRY(launch(*k.up_down, unsigned(tokens), unsigned(splits), &up, stream));
  if (splits == 1) return {};
  if (!k.reduce) return internal_error("split up_down without a resolved reduce kernel");
  ReduceParams rp{reinterpret_cast<const float*>(workspace + l.partial), reinterpret_cast<uint16_t*>(out), tokens};
  return launch(*k.reduce, unsigned(tokens), 1, &rp, stream);
}

}  // namespace

Status sparse_ffn_forward(const SparseFfnKernels& k, const SparseFfnConfig& cfg, const FfnDeviceWeights& w,
                          CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace, CUstream stream) {
  if (tokens == 0) return {};
  const Layout l = layout(cfg, tokens);
  FFNJIT_TRY(launch_gate(*k.gate, cfg, l, w, x, tokens, workspace, stream));
  return launch_up_down(k, cfg, l, w, x, out, tokens, workspace, stream);
}

Status sparse_ffn_gate(KernelTable& kernels, const SparseFfnConfig& cfg, const FfnDeviceWeights& w, CUdeviceptr x,
                       int tokens, CUdeviceptr workspace, CUstream stream) {
  if (tokens == 0) return {};
  auto gate = kernels.get(cfg.gate);
  FFNJIT_TRY(gate);
  return launch_gate(**gate, cfg, layout(cfg, tokens), w, x, tokens, workspace, stream);
}

Status sparse_ffn_up_down(KernelTable& kernels, const SparseFfnConfig& cfg, const FfnDeviceWeights& w, CUdeviceptr x,
                          CUdeviceptr out, int tokens, CUdeviceptr workspace, CUstream stream) {
  if (tokens == 0) return {};
  auto k = resolve_kernels(kernels, cfg);
  FFNJIT_TRY(k);
  return launch_up_down(*k, cfg, layout(cfg, tokens), w, x, out, tokens, workspace, stream);
}

Status sparse_ffn_forward(KernelTable& kernels, const SparseFfnConfig& cfg, const FfnDeviceWeights& w,
                          CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace, CUstream stream) {
  if (tokens == 0) return {};
  auto k = resolve_kernels(kernels, cfg);
  FFNJIT_TRY(k);
  return sparse_ffn_forward(*k, cfg, w, x, out, tokens, workspace, stream);
}

Status transpose_down(KernelTable& kernels, Arch arch, CUdeviceptr wd, CUdeviceptr wd_t, int d_model, int d_ff,
                      CUstream stream) {
  KernelSpec spec = default_spec(Family::kTranspose, {d_model, d_ff, true}, arch, {1, 1});
  auto k = kernels.get(spec);
  FFNJIT_TRY(k);
  TransposeParams p{reinterpret_cast<const uint16_t*>(wd), reinterpret_cast<uint16_t*>(wd_t), d_model, d_ff};
  return launch(**k, ceil_div(d_ff, 32), ceil_div(d_model, 32), &p, stream, 32, 8);
}

}  // namespace ffnjit
