// The search space per kernel family, pruned by shape rules before anything compiles.
#include "tuner/search.hpp"

#include <algorithm>
#include <cmath>
#include <set>

namespace ffnjit {
namespace {

void add_unique(std::vector<KernelSpec>& out, std::set<std::string>& seen, const KernelSpec& s) {
  if (s.validate() && seen.insert(s.canonical()).second) out.push_back(s);
}

}  // namespace

std::vector<Sparsity> format_candidates(const Sparsity& planned, const BatchBucket& bucket, bool from_profile) {
  std::vector<Sparsity> out = {planned};
  const Sparsity untuned{};
  // The runtime's untuned format stays in every search, so the default config is always a candidate.
  if (planned.tile_n != untuned.tile_n || planned.capacity != untuned.capacity) out.push_back(untuned);
  if (from_profile) return out;  // the profile chose the capacity for the planned width
  if (bucket.max_tokens <= 64) out.push_back({64, 15});
  if (bucket.max_tokens >= 1024) out.push_back({256, 63});
  return out;
}

std::vector<KernelSpec> gate_candidates(const LayerShape& layer, Arch arch, const BatchBucket& bucket,
                                        const Sparsity& format) {
  std::vector<KernelSpec> out;
  std::set<std::string> seen;
  // First the runtime's untuned default (the tuner's starting point), then the rest.
  add_unique(out, seen, default_sparse_config(layer, arch, bucket, format).gate);
  const KernelSpec def = default_spec(Family::kGatePack, layer, arch, bucket, format);
  add_unique(out, seen, def);
  std::vector<int> bms;
  if (bucket.max_tokens <= 16) bms = {16};
  else if (bucket.max_tokens <= 64) bms = {16, 32, 64};
  else if (bucket.max_tokens <= 256) bms = {64, 128};
  else bms = {128, 256};
  for (int bm : bms)
    for (int bk : {32, 64})
      for (int stages : {3, 4}) {
        KernelSpec s = def;
        s.tile.bm = bm, s.tile.bk = bk, s.tile.stages = arch == Arch::kSm89 ? 2 : stages;
        s.tile.warps_m = bm >= 256 ? 4 : bm >= 32 ? 2 : 1;
        s.tile.warps_n = std::min(4, format.tile_n / 16);
        if (bm >= 256) s.tile.warps_n = std::min(2, s.tile.warps_n);
        const int acc = (bm / s.tile.warps_m) * (format.tile_n / s.tile.warps_n) / 32;
        s.tile.min_blocks = bm >= 128 && acc <= 64 ? 2 : 1;
        add_unique(out, seen, s);
      }
  // Up to 64 tokens on sm_90a: gate_pack split over a cluster of 2 or 4 CTAs per tile
  // (at 1 token 22 -> 15 us on H100; close to gate_gemv at 32 tokens, docs/kernels.md).
  if (bucket.max_tokens <= 64 && arch == Arch::kSm90a)
    for (int splits : {2, 4}) {
      KernelSpec s = def;
      s.tile.splits = splits;
      add_unique(out, seen, s);
    }
  // Decode: gate_gemv with its default column block, and 16 tokens when that is
  // smaller (fewer registers; more column blocks re-read Wg from L2), 8 or 16 warps,
  // 2, 4 or 8 loads in flight per warp.
  if (bucket.max_tokens <= 64) {
    const KernelSpec gemv = default_spec(Family::kGateGemv, layer, arch, bucket, format);
    for (int bm : {gemv.tile.bm, std::min(gemv.tile.bm, 16), std::min(64, (bucket.max_tokens + 7) / 8 * 8)})
      for (int threads : {256, 512})
        for (int unroll : {2, 4, 8}) {
          KernelSpec s = gemv;
          s.tile.bm = bm, s.tile.threads = threads, s.tile.stages = unroll;
          add_unique(out, seen, s);
        }
  }
  // Beyond decode: the cuBLASLt GEMM gate with the packing kernel behind it.
  if (bucket.max_tokens > 16)
    for (int threads : {128, 256}) {
      KernelSpec s = default_spec(Family::kPack, layer, arch, bucket, format);
      s.tile.threads = threads;
      add_unique(out, seen, s);
    }
  return out;
}

std::vector<KernelSpec> up_down_candidates(const LayerShape& layer, Arch arch, const BatchBucket& bucket,
                                           const Sparsity& format) {
  std::vector<KernelSpec> out;
  std::set<std::string> seen;
  const KernelSpec def = default_spec(Family::kUpDown, layer, arch, bucket, format);
  add_unique(out, seen, def);
  std::vector<int> splits = {1};
  const int tiles = def.n_tiles();
  if (bucket.max_tokens <= 16) splits = {1, 4, 8, 16, tiles};
  else if (bucket.max_tokens <= 128) splits = {1, 2, 4, 8};
  for (int threads : {128, 256})
    for (int split : splits)
      for (int min_blocks : {threads == 128 ? 8 : 4, threads == 128 ? 4 : 2}) {
        KernelSpec s = def;
        s.tile.threads = threads, s.tile.splits = std::min(split, tiles), s.tile.min_blocks = min_blocks;
        add_unique(out, seen, s);
      }
  // Many tokens: up then down with the output columns split (L2-sized working sets).
  if (bucket.max_tokens > 64)
    for (int threads : {128, 256})
      for (int split : {1, 2, 4}) {
        KernelSpec s = default_spec(Family::kDown, layer, arch, bucket, format);
        s.tile.threads = threads, s.tile.splits = split, s.tile.min_blocks = threads == 128 ? 8 : 4;
        add_unique(out, seen, s);
      }
  return out;
}

SparseFfnConfig make_pipeline(const KernelSpec& gate, const KernelSpec& up_down) {
  SparseFfnConfig cfg;
  cfg.gate = gate, cfg.up_down = up_down;
  cfg.up = default_spec(Family::kUp, gate.layer, gate.arch, gate.bucket, gate.sparsity);
  set_default_launch(cfg);
  return cfg;
}

const char* stage_name(SearchStage s) {
  switch (s) {
    case SearchStage::kGate: return "gate";
    case SearchStage::kUpDown: return "up_down";
    case SearchStage::kForward: return "forward";
  }
  return "?";
}

Status run_stage(const SparseFfnKernels& kernels, const SparseFfnConfig& cfg, SearchStage stage,
                 const FfnDeviceWeights& w, CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace,
                 CUstream stream) {
  if (stage == SearchStage::kGate) return sparse_ffn_gate(kernels, cfg, w, x, tokens, workspace, stream);
  if (stage == SearchStage::kUpDown) return sparse_ffn_up_down(kernels, cfg, w, x, out, tokens, workspace, stream);
  return sparse_ffn_forward(kernels, cfg, w, x, out, tokens, workspace, stream);
}

SearchResult search_sparse(const LayerShape& layer, Arch arch, const BatchBucket& bucket,
                           const std::vector<Sparsity>& formats,
                           const std::function<Expected<Timing>(const SparseFfnConfig&, SearchStage)>& time) {
  SearchResult r;
  auto timed_forward = [&](const SparseFfnConfig& cfg) {
    for (const auto& [c, us] : r.forwards)
      if (c.kernel_specs().size() == cfg.kernel_specs().size() && c.describe() == cfg.describe()) return;
    auto t = time(cfg, SearchStage::kForward);
    if (t) r.forwards.push_back({cfg, t->median_us});
  };
  for (const auto& f : formats) {
    const auto gates = gate_candidates(layer, arch, bucket, f);
    const auto ups = up_down_candidates(layer, arch, bucket, f);
    // Gates alone behind the default up/down; the best few go on to full forwards,
    // since a gate's own time misses what it does for the kernel behind it (gate_gemv
    // prefetches the up/down rows into L2 at decode).
    std::vector<std::pair<double, KernelSpec>> gate_times;
    for (const auto& g : gates) {
      auto t = time(make_pipeline(g, ups[0]), SearchStage::kGate);
      if (t) gate_times.push_back({t->median_us, g});
    }
    std::stable_sort(gate_times.begin(), gate_times.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    if (gate_times.empty()) continue;
    KernelSpec best_ud = ups[0];
    double best_ud_us = INFINITY;
    for (const auto& u : ups) {
      auto t = time(make_pipeline(gate_times[0].second, u), SearchStage::kUpDown);
      if (t && t->median_us < best_ud_us) best_ud_us = t->median_us, best_ud = u;
    }
    for (size_t i = 0; i < gate_times.size() && i < kForwardGates; ++i)
      timed_forward(make_pipeline(gate_times[i].second, best_ud));
    timed_forward(default_sparse_config(layer, arch, bucket, f));
  }
  std::stable_sort(r.forwards.begin(), r.forwards.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  return r;
}

}  // namespace ffnjit
