// runtime::Layer: one registered FFN layer as it is served: its device weights, the
// choice resolved per batch bucket (tuned record or default, kernels loaded), the
// workspace each needs, and the forward. The C API (runtime/c_api.cpp) is a thin face
// over it; `ffnjit tune` and `ffnjit bench` time candidates through the same
// Layer::enqueue, so what is timed is what is served.
#pragma once

#include <cuda.h>

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "runtime/buckets.hpp"
#include "runtime/choice.hpp"
#include "runtime/device_weights.hpp"
#include "runtime/forward_graph.hpp"

namespace ffnjit {

// Where a bucket's choice came from (ffnjit_context_stats).
enum class ChoiceSource { kLayer, kShape, kDefault };

// One bucket's choice with everything a forward needs resolved.
struct ServedPlan {
  Choice choice;
  ChoiceSource source = ChoiceSource::kDefault;
  SparseFfnKernels kernels;             // sparse strategy
  const LoadedKernel* stats = nullptr;  // serving counters (count_sparsity)
  const LoadedKernel* switch_act = nullptr;  // the dense switch's activation (switch_active > 0)
  CUdeviceptr tile_hist = 0;            // this plan's tile width's per-tile histograms
  mutable ForwardGraph graph;           // repeated calls replay as one graph launch
};

// The context's tuning records: the choice stored for (signature, bucket), if any,
// for this device and toolchain.
using ChoiceLookup = std::function<Expected<std::optional<Choice>>(
    const LayerShape& shape, const std::string& signature, const BatchBucket& bucket)>;

struct LayerOptions {
  LayerShape shape;
  Sparsity sparsity;           // the engine's TwELL format, or the default
  bool sparsity_fixed = false;  // the engine set tile_n/capacity: records of another format are not served
  std::string id;              // layer_id ("" for none)
  bool count_sparsity = false;  // keep serving histograms (one stats kernel per sparse forward)
};

class Layer {
 public:
  // Uploads the weights (Wg, Wu, Wd, WdT) and the counters; synchronizes `stream`.
  static Expected<std::unique_ptr<Layer>> create(KernelTable& kernels, Arch arch, const HostFfnWeights& weights,
                                                 const LayerOptions& options, CUstream stream);
  // With weights already on the device (ffnjit_layer_register copies an engine's).
  static Expected<std::unique_ptr<Layer>> create(KernelTable& kernels, Arch arch, DeviceWeights weights,
                                                 const LayerOptions& options);
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;
  ~Layer();

  const LayerShape& shape() const { return options_.shape; }
  Arch arch() const { return arch_; }
  const LayerOptions& options() const { return options_; }
  // The shape signature records for any layer of this shape are stored under.
  const std::string& shape_signature() const { return shape_signature_; }

  // The published plan of runtime bucket `bucket` (an index of default_buckets()),
  // resolved on first use: the record for the layer id, else for the shape, else the
  // default (docs/identity.md). Thread-safe; later calls are one atomic load.
  // `resolved` is told where the choice came from, once, when the plan is published.
  // The published plan of `bucket`, or null before its first resolution (the hot path).
  const ServedPlan* published(int bucket) const {
    return size_t(bucket) < kMaxBuckets ? published_[size_t(bucket)].load(std::memory_order_acquire) : nullptr;
  }
  Expected<const ServedPlan*> plan(int bucket, const ChoiceLookup& lookup,
                                   const std::function<void(ChoiceSource)>& resolved = {});
  // A plan for an explicit choice (the tuner's and the bench's candidates); not published.
  Expected<std::unique_ptr<ServedPlan>> make_plan(const Choice& choice);

  size_t workspace_bytes(const ServedPlan& plan, int tokens) const;
  // out[tokens][d_model] = FFN(x) with `plan`, enqueued on `stream` (the hot path).
  Status enqueue(const ServedPlan& plan, CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace,
                 CUstream stream) const;
  // enqueue, replaying a captured graph when the previous call had the same arguments
  // (runtime/forward_graph.hpp); captures on `capture_stream` under `capture_mu`.
  Status forward(const ServedPlan& plan, CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace,
                 CUstream stream, CUstream capture_stream, std::mutex& capture_mu) const;

  // (token, tile) pairs over capacity since registration (synchronizes).
  Expected<uint64_t> overflow_tiles() const;
  // Serving histograms (count_sparsity), downloaded.
  struct Histograms {
    std::vector<uint64_t> tokens_by_active;   // [d_ff + 1]
    std::vector<uint64_t> neuron_active;      // [d_ff]
    std::map<int, std::vector<uint64_t>> tiles;  // tile width -> [n_tiles][tile_n + 1]
  };
  Expected<Histograms> histograms() const;

  const DeviceWeights& weights() const { return weights_; }
  // The weights as the sparse kernels read them, with the layer's overflow counter.
  const FfnDeviceWeights& sparse_weights() const { return sparse_weights_; }

 private:
  Layer(KernelTable& kernels, Arch arch, LayerOptions options);
  Expected<std::unique_ptr<ServedPlan>> prepare(const Choice& choice, const BatchBucket& bucket);
  // The sparse forward into a stream that is being captured, each chunk's up/down behind
  // a conditional node the chunk's gate sets (the device-side dense switch).
  Status enqueue_switched(const ServedPlan& plan, CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace,
                          CUstream stream) const;
  Status enqueue_stats(const ServedPlan& plan, int tokens, CUdeviceptr workspace, CUstream stream) const;

  KernelTable& kernels_;
  Arch arch_;
  LayerOptions options_;
  std::string shape_signature_;
  DeviceWeights weights_;
  DeviceBuffer counters_;  // uint32 overflow total since registration
  FfnDeviceWeights sparse_weights_;
  DeviceBuffer token_hist_, neuron_active_;  // serving counters (uint64)
  std::map<int, DeviceBuffer> tile_hist_;
  std::unique_ptr<DenseFfn> dense_;  // made for the first dense plan
  std::mutex mu_;                    // resolution (never held by a forward)
  mutable std::mutex switch_mu_;     // guards body_stream_ (captures of switched forwards)
  mutable CUstream body_stream_ = nullptr;  // where the conditional bodies are captured
  static constexpr size_t kMaxBuckets = 16;
  std::array<std::atomic<const ServedPlan*>, kMaxBuckets> published_{};
  std::array<std::unique_ptr<ServedPlan>, kMaxBuckets> owned_;
};

}  // namespace ffnjit
