// One candidate check shared by `ffnjit tune` and `ffnjit bench`: a choice becomes a
// runtime::Layer plan (what serving would run), runs once over poisoned output and is
// compared with the fp64 CPU reference on sampled tokens, then is timed as a CUDA graph.
#pragma once

#include <vector>

#include "model/reference.hpp"
#include "runtime/layer.hpp"
#include "tuner/measure.hpp"
#include "tuner/search.hpp"

namespace ffnjit {

// Relative error a candidate may have against the fp64 reference (bf16 storage).
inline constexpr double kCandidateTolerance = 1e-2;

class CandidateBench {
 public:
  // Inputs x_host [tokens][d_model] for `layer`, whose host weights `host` give the
  // reference. Checks `check_count` tokens spread over the batch (first and last included).
  static Expected<CandidateBench> create(const Device& dev, CUstream stream, Layer& layer, const ref::FfnWeights& host,
                                         const std::vector<uint16_t>& x_host, int check_count = 4);

  int tokens() const { return tokens_; }
  CUdeviceptr workspace() const { return ws_.ptr(); }
  Layer& layer() const { return *layer_; }

  // Runs `plan` once over a poisoned output; an error when it disagrees with the reference.
  Status check(const ServedPlan& plan);
  // Times `plan` (the whole forward, or one stage of a sparse plan) as a CUDA graph.
  Expected<Timing> time(const ServedPlan& plan, SearchStage stage, const MeasureOptions& mo);
  // make_plan + check + time; the error says why a candidate was rejected. A kernel that
  // spills to local memory rejects the candidate unless `allow_spills` (the untuned
  // default, which stays in every search space and is judged by its time alone).
  Expected<Timing> check_and_time(const Choice& choice, SearchStage stage, const MeasureOptions& mo,
                                  bool allow_spills = false);
  // The relative error of the last check.
  double last_error() const { return last_error_; }
  // What the last check of sparse `plan` left in the workspace's TwELL: mean active
  // neurons per token and the fraction of (token, tile) pairs over capacity.
  struct TwellStats {
    double mean_active = 0, overflow_rate = 0;
  };
  Expected<TwellStats> twell_stats(const ServedPlan& plan) const;

 private:
  CandidateBench() = default;
  Status ensure_workspace(size_t bytes);
  const Device* dev_ = nullptr;
  CUstream stream_ = nullptr;
  Layer* layer_ = nullptr;
  int tokens_ = 0, d_model_ = 0;
  DeviceBuffer x_, out_, ws_;
  std::vector<int> check_tokens_;
  std::vector<double> ref_;  // [check_tokens][d_model]
  double last_error_ = 0;
};

}  // namespace ffnjit
