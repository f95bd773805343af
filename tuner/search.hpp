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
Status run_stage(KernelTable& kernels, const SparseFfnConfig& cfg, SearchStage stage, const FfnDeviceWeights& w,
                 CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace, CUstream stream);

// The sparse search of `ffnjit tune` (and `ffnjit bench --tuned`) for one layer and
// bucket, per format: gate candidates timed alone behind the default up/down, up/down
// candidates behind the best gate, then that pair's full forward. `time` checks a
// config's output and times the stage; an error rejects the candidate. Returns the
// fastest full forward (best_us stays infinite when none ran).
struct SearchResult {
  SparseFfnConfig best;
  double best_us;
};
SearchResult search_sparse(const LayerShape& layer, Arch arch, const BatchBucket& bucket,
                           const std::vector<Sparsity>& formats,
                           const std::function<Expected<Timing>(const SparseFfnConfig&, SearchStage)>& time);

}  // namespace ffnjit
