// The search space per kernel family, pruned by shape rules before anything compiles.
#pragma once

#include <functional>
#include <vector>

#include "runtime/sparse_ffn.hpp"
#include "tuner/measure.hpp"

namespace ffnjit {

// TwELL formats worth trying for a bucket: the planned one first, then (without a
// profile fixing the capacity) narrower tiles for few tokens and wider ones for many.
std::vector<Sparsity> format_candidates(const Sparsity& planned, const BatchBucket& bucket, bool from_profile);

// Gate tile variants for a format and bucket (valid specs only; the default first).
std::vector<KernelSpec> gate_candidates(const LayerShape& layer, Arch arch, const BatchBucket& bucket,
                                        const Sparsity& format);

// Up/down variants (threads, splits, CTAs per SM) for a format and bucket, default first.
std::vector<KernelSpec> up_down_candidates(const LayerShape& layer, Arch arch, const BatchBucket& bucket,
                                           const Sparsity& format);

// A gate and up/down pair as one sparse config (up, used behind a down kernel, at its default).
SparseFfnConfig make_pipeline(const KernelSpec& gate, const KernelSpec& up_down);

// What a search timing covers: the gate alone, the up/down stage alone, or the forward.
enum class SearchStage { kGate, kUpDown, kForward };
const char* stage_name(SearchStage s);  // "gate", "up_down", "forward"
// Enqueues that stage of `cfg` (what a search times).
Status run_stage(const SparseFfnKernels& kernels, const SparseFfnConfig& cfg, SearchStage stage,
                 const FfnDeviceWeights& w, CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace,
                 CUstream stream);

// The sparse search of `ffnjit tune` (and `ffnjit bench --tuned`) for one layer and
// bucket, per format: gate candidates timed alone behind the default up/down, up/down
// candidates behind the best gate, then full forwards of the best kForwardGates gates
// with that up/down and of the format's default config. `time` checks a config's
// output and times the stage; an error rejects the candidate. Returns every full
// forward timed, fastest first (empty when none ran).
inline constexpr size_t kForwardGates = 3;
struct SearchResult {
  std::vector<std::pair<SparseFfnConfig, double>> forwards;  // (config, median us), fastest first
};
SearchResult search_sparse(const LayerShape& layer, Arch arch, const BatchBucket& bucket,
                           const std::vector<Sparsity>& formats,
                           const std::function<Expected<Timing>(const SparseFfnConfig&, SearchStage)>& time);

}  // namespace ffnjit
