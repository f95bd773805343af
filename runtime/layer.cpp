// runtime::Layer: device weights, per-bucket plans, the served forward.
#include "runtime/layer.hpp"

#include "support/env.hpp"

#include "templates/ffnjit/params.h"

namespace ffnjit {

Layer::Layer(KernelTable& kernels, Arch arch, LayerOptions options)
    : kernels_(kernels), arch_(arch), options_(std::move(options)), shape_signature_(ffnjit::shape_signature(options_.shape)) {}

Layer::~Layer() {
  if (body_stream_)
    if (auto api = drv::api()) (*api)->cuStreamDestroy(body_stream_);
}

namespace {

// Whether this driver builds graphs with conditional IF/ELSE nodes (CUDA 12.8+): probed
// once per process on an empty graph (no instantiation: the probe may run while the
// caller captures a stream, where instantiating is not allowed); without them the dense
// switch is off and switched plans run the plain sparse forward.
bool conditional_nodes_work(const drv::Api* cu) {
  static const bool ok = [cu] {
    CUgraph g = nullptr;
    if (cu->cuGraphCreate(&g, 0) != CUDA_SUCCESS) return false;
    CUcontext ctx = nullptr;
    CUgraphConditionalHandle h = 0;
    bool good = cu->cuCtxGetCurrent(&ctx) == CUDA_SUCCESS &&
                cu->cuGraphConditionalHandleCreate(&h, g, ctx, 0, CU_GRAPH_COND_ASSIGN_DEFAULT) == CUDA_SUCCESS;
    if (good) {
      CUgraphNodeParams np{};
      np.type = CU_GRAPH_NODE_TYPE_CONDITIONAL;
      np.conditional.handle = h, np.conditional.type = CU_GRAPH_COND_TYPE_IF, np.conditional.size = 2;
      np.conditional.ctx = ctx;
      CUgraphNode node = nullptr;
      good = cu->cuGraphAddNode(&node, g, nullptr, nullptr, 0, &np) == CUDA_SUCCESS;
    }
    cu->cuGraphDestroy(g);
    return good;
  }();
  return ok;
}

}  // namespace

Expected<std::unique_ptr<Layer>> Layer::create(KernelTable& kernels, Arch arch, const HostFfnWeights& weights,
                                               const LayerOptions& options, CUstream stream) {
  // Wd stays on the device too: a bucket whose choice is dense needs it.
  auto w = DeviceWeights::upload(kernels, arch, weights, stream, /*with_dense=*/true);
  FFNJIT_TRY(w);
  return create(kernels, arch, std::move(*w), options);
}

Expected<std::unique_ptr<Layer>> Layer::create(KernelTable& kernels, Arch arch, DeviceWeights weights,
                                               const LayerOptions& options) {
  std::unique_ptr<Layer> l(new Layer(kernels, arch, options));
  l->weights_ = std::move(weights);
  auto counters = DeviceBuffer::alloc(256);
  FFNJIT_TRY(counters);
  l->counters_ = std::move(*counters);
  FFNJIT_TRY(l->counters_.fill_bytes(0));
  l->sparse_weights_ = l->weights_.sparse();
  l->sparse_weights_.overflow_counter = l->counters_.ptr();
  if (options.count_sparsity) {
    const int dff = options.shape.d_ff;
    for (auto [buf, n] : {std::pair{&l->token_hist_, dff + 1}, std::pair{&l->neuron_active_, dff}}) {
      auto b = DeviceBuffer::alloc(size_t(n) * 8);
      FFNJIT_TRY(b);
      *buf = std::move(*b);
      FFNJIT_TRY(buf->fill_bytes(0));
    }
  }
  return l;
}

Expected<std::unique_ptr<ServedPlan>> Layer::prepare(const Choice& choice, const BatchBucket& bucket) {
  auto p = std::make_unique<ServedPlan>();
  p->choice = choice;
  if (choice.strategy == Choice::Strategy::kDense) {
    if (!dense_) {
      auto d = DenseFfn::create(kernels_, arch_, options_.shape);
      FFNJIT_TRY(d);
      dense_ = std::move(*d);
    }
    return p;
  }
  FFNJIT_TRY(choice.sparse.validate());
  auto k = resolve_kernels(kernels_, choice.sparse);
  FFNJIT_TRY(k);
  p->kernels = *k;
  if (choice.sparse.switch_active > 0 && choice.sparse.gemm_gate()) {
    auto act = kernels_.get(default_spec(Family::kDenseAct, options_.shape, arch_, {1, 1}));
    FFNJIT_TRY(act);
    p->switch_act = *act;
  }
  if (options_.count_sparsity) {
    KernelSpec st = default_spec(Family::kStats, options_.shape, arch_, bucket, choice.sparse.gate.sparsity);
    st.tile.threads = 128;
    auto sk = kernels_.get(st);
    FFNJIT_TRY(sk);
    p->stats = *sk;
    const int tn = choice.sparse.gate.sparsity.tile_n;
    auto& hist = tile_hist_[tn];
    if (!hist.size()) {
      auto h = DeviceBuffer::alloc(size_t(choice.sparse.gate.n_tiles()) * (tn + 1) * 8);
      FFNJIT_TRY(h);
      hist = std::move(*h);
      FFNJIT_TRY(hist.fill_bytes(0));
    }
    p->tile_hist = hist.ptr();
  }
  return p;
}

Expected<std::unique_ptr<ServedPlan>> Layer::make_plan(const Choice& choice) {
  std::lock_guard<std::mutex> lock(mu_);
  const BatchBucket b = choice.strategy == Choice::Strategy::kDense ? BatchBucket{} : choice.sparse.gate.bucket;
  return prepare(choice, b);
}

Expected<const ServedPlan*> Layer::plan(int bucket, const ChoiceLookup& lookup,
                                        const std::function<void(ChoiceSource)>& resolved) {
  if (bucket < 0 || size_t(bucket) >= default_buckets().size() || size_t(bucket) >= kMaxBuckets)
    return internal_error("bucket index " + std::to_string(bucket) + " is outside the runtime's bucket table");
  if (const auto* r = published_[bucket].load(std::memory_order_acquire)) return r;
  std::lock_guard<std::mutex> lock(mu_);
  if (const auto* r = published_[bucket].load(std::memory_order_acquire)) return r;
  const BatchBucket& b = default_buckets()[bucket];
  Choice choice{Choice::Strategy::kSparse, default_sparse_config(options_.shape, arch_, b, options_.sparsity)};
  ChoiceSource source = ChoiceSource::kDefault;
  // A record is served when it is dense or its TwELL format is the one the engine
  // fixed (or the engine fixed none): the layer id's first, then the shape's.
  auto servable = [&](const Choice& c) {
    return c.strategy == Choice::Strategy::kDense || !options_.sparsity_fixed ||
           (c.sparse.gate.sparsity.tile_n == options_.sparsity.tile_n &&
            c.sparse.gate.sparsity.capacity == options_.sparsity.capacity);
  };
  const std::pair<const std::string*, ChoiceSource> order[] = {{&options_.id, ChoiceSource::kLayer},
                                                               {&shape_signature_, ChoiceSource::kShape}};
  for (const auto& [sig, src] : order) {
    if (sig->empty() || !lookup) continue;
    auto found = lookup(options_.shape, *sig, b);
    FFNJIT_TRY(found);
    if (*found && servable(**found)) {
      choice = **found, source = src;
      break;
    }
  }
  auto p = prepare(choice, b);
  FFNJIT_TRY(p);
  (*p)->source = source;
  owned_[bucket] = std::move(*p);
  published_[bucket].store(owned_[bucket].get(), std::memory_order_release);
  if (resolved) resolved(source);
  return owned_[bucket].get();
}

size_t Layer::workspace_bytes(const ServedPlan& p, int tokens) const {
  if (p.choice.strategy == Choice::Strategy::kDense) return dense_->workspace_bytes(tokens);
  return sparse_workspace_bytes(p.choice.sparse, tokens);
}

Status Layer::enqueue(const ServedPlan& p, CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace,
                      CUstream stream) const {
  if (p.choice.strategy == Choice::Strategy::kDense)
    return dense_->forward(weights_.dense(), x, out, tokens, workspace, stream);
  if (p.switch_act) {
    // The switch needs a graph: only a stream being captured (the caller's, or the
    // runtime's own capture of repeated calls) gets the conditional nodes, unless
    // FFNJIT_NO_SWITCH is set (read per capture, so that a benchmark can capture exactly
    // what the direct path launches).
    auto api = drv::api();
    FFNJIT_TRY(api);
    const drv::Api* cu = *api;
    CUstreamCaptureStatus capturing = CU_STREAM_CAPTURE_STATUS_NONE;
    FFNJIT_CU(cuStreamIsCapturing(stream, &capturing));
    if (capturing == CU_STREAM_CAPTURE_STATUS_ACTIVE && conditional_nodes_work(cu) &&
        !env::flag(env::kNoSwitch))
      return enqueue_switched(p, x, out, tokens, workspace, stream);
  }
  FFNJIT_TRY(sparse_ffn_forward(p.kernels, p.choice.sparse, sparse_weights_, x, out, tokens, workspace, stream));
  return enqueue_stats(p, tokens, workspace, stream);
}

Status Layer::enqueue_stats(const ServedPlan& p, int tokens, CUdeviceptr workspace, CUstream stream) const {
  if (!p.stats) return {};
  const TwellView tw = twell_in_workspace(p.choice.sparse, tokens, workspace);
  StatsParams sp{reinterpret_cast<const u32*>(tw.counts), reinterpret_cast<const u32*>(tw.entries),
                 token_hist_.as<u64>(), reinterpret_cast<u64*>(p.tile_hist), neuron_active_.as<u64>(), tokens};
  return launch(*p.stats, unsigned(tokens), 1, &sp, stream);
}

Status Layer::enqueue_switched(const ServedPlan& p, CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace,
                               CUstream stream) const {
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  std::lock_guard<std::mutex> lock(switch_mu_);
  if (!body_stream_) FFNJIT_CU(cuStreamCreate(&body_stream_, CU_STREAM_NON_BLOCKING));
  CUcontext ctx = nullptr;
  FFNJIT_CU(cuCtxGetCurrent(&ctx));
  const SparseFfnConfig& cfg = p.choice.sparse;
  const FfnDeviceWeights& w = sparse_weights_;
  FFNJIT_TRY(sparse_forward_begin(cfg, w, tokens, workspace, /*switched=*/true, stream));
  // Captures `body` into a conditional body graph.
  auto capture_into = [&](CUgraph graph, auto&& body) -> Status {
    FFNJIT_CU(cuStreamBeginCaptureToGraph(body_stream_, graph, nullptr, nullptr, 0, CU_STREAM_CAPTURE_MODE_RELAXED));
    const Status s = body(body_stream_);
    CUgraph captured = nullptr;
    const CUresult end = cu->cuStreamEndCapture(body_stream_, &captured);
    FFNJIT_TRY(s);
    if (end != CUDA_SUCCESS) return drv::driver_error("cuStreamEndCapture", end);
    return {};
  };
  for (int r0 = 0; r0 < tokens; r0 += kGateGemmRows) {
    const int rows = std::min(kGateGemmRows, tokens - r0);
    CUstreamCaptureStatus status;
    CUgraph graph = nullptr;
    const CUgraphNode* deps = nullptr;
    const CUgraphEdgeData* edges = nullptr;
    size_t n_deps = 0;
    FFNJIT_CU(cuStreamGetCaptureInfo(stream, &status, nullptr, &graph, &deps, &edges, &n_deps));
    CUgraphConditionalHandle handle = 0;
    FFNJIT_CU(cuGraphConditionalHandleCreate(&handle, graph, ctx, 0, CU_GRAPH_COND_ASSIGN_DEFAULT));
    // The chunk's gate: its pack kernel's last CTA sets the conditional from the counts.
    const SwitchDecision decide{handle, unsigned(std::min<long long>(0xffffffffLL, (long long)cfg.switch_active * rows))};
    FFNJIT_TRY(sparse_gate_chunk(p.kernels, cfg, w, x, tokens, r0, rows, workspace, &decide, stream));
    FFNJIT_CU(cuStreamGetCaptureInfo(stream, &status, nullptr, &graph, &deps, &edges, &n_deps));
    CUgraphNodeParams np{};
    np.type = CU_GRAPH_NODE_TYPE_CONDITIONAL;
    np.conditional.handle = handle, np.conditional.type = CU_GRAPH_COND_TYPE_IF, np.conditional.size = 2;
    np.conditional.ctx = ctx;
    CUgraphNode node = nullptr;
    FFNJIT_CU(cuGraphAddNode(&node, graph, deps, edges, n_deps, &np));
    // IF (too dense): the dense up/down on cuBLASLt; ELSE: the sparse up/down.
    FFNJIT_TRY(capture_into(np.conditional.phGraph_out[0], [&](CUstream s) {
      return dense_up_down_chunk(p.kernels, cfg, w, weights_.dense().w_down, *p.switch_act, x, out, tokens, r0, rows,
                                 workspace, s);
    }));
    FFNJIT_TRY(capture_into(np.conditional.phGraph_out[1], [&](CUstream s) {
      return sparse_up_down_chunk(p.kernels, cfg, w, x, out, tokens, r0, rows, workspace, s);
    }));
    FFNJIT_CU(cuStreamUpdateCaptureDependencies(stream, &node, nullptr, 1, CU_STREAM_SET_CAPTURE_DEPENDENCIES));
  }
  return enqueue_stats(p, tokens, workspace, stream);
}

Status Layer::forward(const ServedPlan& p, CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace,
                      CUstream stream, CUstream capture_stream, std::mutex& capture_mu) const {
  auto enqueue_on = [&](CUstream s) { return enqueue(p, x, out, tokens, workspace, s); };
  const ForwardGraph::Key key{tokens, x, out, workspace};
  return p.graph.run(key, stream, capture_stream, capture_mu, enqueue_on);
}

Expected<uint64_t> Layer::overflow_tiles() const {
  uint32_t overflow = 0;
  FFNJIT_TRY(counters_.download(&overflow, 4));
  return uint64_t(overflow);
}

Expected<Layer::Histograms> Layer::histograms() const {
  if (!options_.count_sparsity) return user_error("the layer keeps no serving counters (count_sparsity is off)");
  const int dff = options_.shape.d_ff;
  Histograms h;
  h.tokens_by_active.resize(size_t(dff) + 1);
  h.neuron_active.resize(size_t(dff));
  FFNJIT_TRY(token_hist_.download(h.tokens_by_active.data(), h.tokens_by_active.size() * 8));
  FFNJIT_TRY(neuron_active_.download(h.neuron_active.data(), h.neuron_active.size() * 8));
  for (const auto& [tn, buf] : tile_hist_) {
    auto& v = h.tiles[tn];
    v.resize(size_t((dff + tn - 1) / tn) * (tn + 1));
    FFNJIT_TRY(buf.download(v.data(), v.size() * 8));
  }
  return h;
}

}  // namespace ffnjit
