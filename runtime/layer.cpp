// runtime::Layer: device weights, per-bucket plans, the served forward.
#include "runtime/layer.hpp"

#include "templates/ffnjit/params.h"

namespace ffnjit {

Layer::Layer(KernelTable& kernels, Arch arch, LayerOptions options)
    : kernels_(kernels), arch_(arch), options_(std::move(options)), shape_signature_(ffnjit::shape_signature(options_.shape)) {}

Layer::~Layer() = default;

Expected<std::unique_ptr<Layer>> Layer::create(KernelTable& kernels, Arch arch, const HostFfnWeights& weights,
                                               const LayerOptions& options, CUstream stream) {
  std::unique_ptr<Layer> l(new Layer(kernels, arch, options));
  // Wd stays on the device too: a bucket whose choice is dense needs it.
  auto w = DeviceWeights::upload(kernels, arch, weights, stream, /*with_dense=*/true);
  FFNJIT_TRY(w);
  l->weights_ = std::move(*w);
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
  const SparseFfnConfig& cfg = p.choice.sparse;
  FFNJIT_TRY(sparse_ffn_forward(p.kernels, cfg, sparse_weights_, x, out, tokens, workspace, stream));
  if (!p.stats) return {};
  const TwellView tw = twell_in_workspace(cfg, tokens, workspace);
  StatsParams sp{reinterpret_cast<const u32*>(tw.counts), reinterpret_cast<const u32*>(tw.entries),
                 token_hist_.as<u64>(), reinterpret_cast<u64*>(p.tile_hist), neuron_active_.as<u64>(), tokens};
  return launch(*p.stats, unsigned(tokens), 1, &sp, stream);
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
