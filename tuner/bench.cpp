// The sparse-vs-dense benchmark behind `ffnjit bench` (synthetic layers or a checkpoint).
#include "tuner/bench.hpp"

#include <algorithm>
#include <map>
#include <numeric>
#include <mutex>
#include <random>

#include "cache/cache.hpp"
#include "model/checkpoint.hpp"
#include "model/profiler.hpp"
#include "model/synthetic.hpp"
#include "runtime/cache_io.hpp"
#include "runtime/identity.hpp"
#include "runtime/record_lookup.hpp"
#include "tuner/select.hpp"

namespace ffnjit {
namespace {

// The GPU, a stream and one kernel table for the whole run.
struct Env {
  std::unique_ptr<Device> dev;
  CUstream stream = nullptr;
  KernelTable kernels;
  Arch arch = Arch::kSm90a;
  ~Env() {
    if (stream) dev->api()->cuStreamDestroy(stream);
  }
};

Expected<std::unique_ptr<Env>> open_env(int device) {
  auto env = std::make_unique<Env>();
  auto d = Device::open(device);
  FFNJIT_TRY(d);
  env->dev = std::make_unique<Device>(std::move(*d));
  auto arch = parse_arch(env->dev->info().arch);
  FFNJIT_TRY(arch);
  env->arch = *arch;
  const drv::Api* cu = env->dev->api();
  FFNJIT_CU(cuStreamCreate(&env->stream, CU_STREAM_NON_BLOCKING));
  return env;
}

Choice untuned_choice(const Layer& l, int tokens) {
  const BatchBucket b = default_buckets()[size_t(bucket_index(default_buckets(), tokens))];
  return Choice{Choice::Strategy::kSparse, default_sparse_config(l.shape(), l.arch(), b, l.options().sparsity)};
}

// Mean active neurons per token and the overflow rate of the TwELL a sparse plan left
// in the bench's workspace (its last check).
Status twell_stats(const CandidateBench& b, const ServedPlan& p, BenchRow& row) {
  const size_t nt = size_t(p.choice.sparse.gate.n_tiles()), cap = size_t(p.choice.sparse.gate.sparsity.capacity);
  std::vector<uint32_t> counts(size_t(b.tokens()) * nt);
  const TwellView tw = twell_in_workspace(p.choice.sparse, b.tokens(), b.workspace());
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  FFNJIT_CU(cuMemcpyDtoH(counts.data(), tw.counts, counts.size() * 4));
  double nnz = 0, over = 0;
  for (uint32_t c : counts) nnz += c, over += c > cap;
  row.measured_k = nnz / b.tokens();
  row.overflow_rate = over / double(counts.size());
  return {};
}

// Checks the served plan, then times dense, the untuned default and the served plan.
Status time_row(CandidateBench& b, const ServedPlan& untuned, const ServedPlan& served, const MeasureOptions& mo,
                BenchRow& row) {
  Layer& layer = b.layer();
  auto dense = layer.make_plan(Choice{Choice::Strategy::kDense, {}});
  FFNJIT_TRY(dense);
  FFNJIT_TRY(b.check(untuned));
  FFNJIT_TRY(twell_stats(b, untuned, row));
  FFNJIT_TRY(b.check(served));
  row.rel_error = b.last_error();
  if (served.choice.strategy == Choice::Strategy::kSparse) FFNJIT_TRY(twell_stats(b, served, row));
  auto td = b.time(**dense, SearchStage::kForward, mo);
  FFNJIT_TRY(td);
  auto tu = b.time(untuned, SearchStage::kForward, mo);
  FFNJIT_TRY(tu);
  row.dense = *td, row.untuned = *tu;
  row.untuned_kernels = untuned.choice.sparse.describe();
  if (&served == &untuned) {
    row.tuned = row.untuned, row.tuned_kernels = row.untuned_kernels;
    return {};
  }
  auto ts = b.time(served, SearchStage::kForward, mo);
  FFNJIT_TRY(ts);
  row.tuned = *ts;
  row.tuned_kernels =
      served.choice.strategy == Choice::Strategy::kDense ? "dense fallback" : served.choice.sparse.describe();
  return {};
}

Expected<std::vector<BenchRow>> run_synthetic(Env& env, const BenchOptions& o,
                                              const std::function<void(const BenchRow&, int, int)>& progress) {
  const LayerShape shape{o.d_model, o.d_ff, o.gated, DType::kBF16};
  synth::InputOptions uniform, heavy;
  heavy.heavy_fraction = 0.1, heavy.heavy_scale = 1.6f;
  const bool serve_heavy = o.heavy || o.shift;
  std::vector<BenchRow> rows;
  const int total = int(o.k.size() * o.tokens.size());
  for (int k : o.k) {
    auto sl = synth::make_layer(o.d_model, o.d_ff, o.gated, double(k) / o.d_ff, 7 + k);
    const ref::FfnWeights host{o.gated ? sl.wg.data() : nullptr, sl.wu.data(), sl.wd.data(), o.d_model, o.d_ff, o.gated};
    HostFfnWeights hw{o.gated ? sl.wg.data() : nullptr, sl.wu.data(), sl.wd.data(), shape};
    LayerOptions lo;
    lo.shape = shape;
    auto layer = Layer::create(env.kernels, env.arch, hw, lo, env.stream);
    FFNJIT_TRY(layer);
    for (int m : o.tokens) {
      BenchRow row;
      row.tokens = m, row.k = k, row.rows = o.shift ? "shift" : o.heavy ? "heavy" : "uniform";
      auto b = CandidateBench::create(*env.dev, env.stream, **layer, host,
                                      synth::make_inputs(m, o.d_model, o.seed, serve_heavy ? heavy : uniform));
      FFNJIT_TRY(b);
      auto untuned = (*layer)->make_plan(untuned_choice(**layer, m));
      FFNJIT_TRY(untuned);
      std::unique_ptr<ServedPlan> tuned;
      if (o.tuned || o.shift) {
        // Selected as `ffnjit tune` would, on inputs of the tuning distribution
        // (uniform for the shift case), held out on fresh ones of the same kind.
        const auto& tune_in = o.shift ? uniform : serve_heavy ? heavy : uniform;
        auto sel = CandidateBench::create(*env.dev, env.stream, **layer, host,
                                          synth::make_inputs(m, o.d_model, o.seed + 1, tune_in));
        FFNJIT_TRY(sel);
        auto hold = CandidateBench::create(*env.dev, env.stream, **layer, host,
                                           synth::make_inputs(m, o.d_model, o.seed + 2, tune_in));
        FFNJIT_TRY(hold);
        const BatchBucket bucket{m, m};
        auto s = select_choice(*sel, *hold, bucket, default_sparse_config(shape, env.arch, bucket).gate.sparsity,
                               false, o.measure);
        FFNJIT_TRY(s);
        auto p = (*layer)->make_plan(s->winner);
        FFNJIT_TRY(p);
        tuned = std::move(*p);
        row.tuned_source = "selected here";
      }
      FFNJIT_TRY(time_row(*b, **untuned, tuned ? *tuned : **untuned, o.measure, row));
      rows.push_back(row);
      if (progress) progress(row, int(rows.size()), total);
    }
  }
  return rows;
}

// Per row of the captured inputs, its active neurons (from the untuned plan's TwELL).
Expected<std::vector<uint32_t>> active_per_row(Env& env, Layer& layer, const ref::FfnWeights& host,
                                               const model::LayerInputs& in) {
  const int dm = layer.shape().d_model;
  std::vector<uint16_t> x(in.x.begin(), in.x.begin() + size_t(in.tokens) * dm);
  auto b = CandidateBench::create(*env.dev, env.stream, layer, host, x, 1);
  FFNJIT_TRY(b);
  auto p = layer.make_plan(untuned_choice(layer, int(in.tokens)));
  FFNJIT_TRY(p);
  (void)b->check(**p);  // counts are what matter here; the output is checked per row later
  const auto& cfg = (*p)->choice.sparse;
  const size_t nt = size_t(cfg.gate.n_tiles());
  std::vector<uint32_t> counts(size_t(in.tokens) * nt), per_row(size_t(in.tokens));
  const TwellView tw = twell_in_workspace(cfg, int(in.tokens), b->workspace());
  const drv::Api* cu = env.dev->api();
  FFNJIT_CU(cuMemcpyDtoH(counts.data(), tw.counts, counts.size() * 4));
  for (size_t t = 0; t < per_row.size(); ++t)
    per_row[t] = std::accumulate(counts.begin() + t * nt, counts.begin() + (t + 1) * nt, 0u);
  return per_row;
}

Expected<std::vector<BenchRow>> run_checkpoint(Env& env, const BenchOptions& o,
                                               const std::function<void(const BenchRow&, int, int)>& progress) {
  auto ckpt = model::Checkpoint::open(o.checkpoint);
  FFNJIT_TRY(ckpt);
  const auto& info = ckpt->info();
  const std::string inputs = o.inputs.empty() ? o.checkpoint + "/inputs.safetensors" : o.inputs;
  auto store = st::Store::open(inputs);
  FFNJIT_TRY(store);
  auto captured = model::load_layer_inputs(*store, info);
  if (!captured) return Error{captured.error().kind, inputs + ": " + captured.error().message};
  cache::OpenOptions co;
  co.read_only = true;
  auto db = cache::Cache::open(o.cache_path, co);
  FFNJIT_TRY(db);
  std::mutex mu;
  RecordLookupState records{&*db, &mu, toolchain_identity(env.dev->info()), env.arch, {}};
  const ChoiceLookup lookup = record_lookup(records);
  std::vector<BenchRow> rows;
  const int total = int(captured->size() * (o.tokens.size() + o.heaviest.size()));
  std::mt19937_64 rng(o.seed);
  for (const auto& in : *captured) {
    const model::FfnLayer& L = info.layers[size_t(in.layer)];
    auto w = ckpt->load_layer(L.index);
    FFNJIT_TRY(w);
    const LayerShape shape{L.d_model, L.d_ff, L.gated, DType::kBF16};
    LayerOptions lo;
    lo.shape = shape;
    lo.id = format_layer_id({info.fingerprint, L.index, 1, 0});
    HostFfnWeights hw{L.gated ? w->wg.data() : nullptr, w->wu.data(), w->wd.data(), shape};
    auto layer = Layer::create(env.kernels, env.arch, hw, lo, env.stream);
    FFNJIT_TRY(layer);
    auto per_row = active_per_row(env, **layer, w->view(), in);
    FFNJIT_TRY(per_row);
    std::vector<size_t> heaviest(per_row->size());
    std::iota(heaviest.begin(), heaviest.end(), 0);
    std::stable_sort(heaviest.begin(), heaviest.end(), [&](size_t a, size_t b) { return (*per_row)[a] > (*per_row)[b]; });
    auto run = [&](const std::string& kind, int m, const std::vector<size_t>& pick) -> Status {
      BenchRow row;
      row.layer = L.index, row.rows = kind, row.tokens = m;
      std::vector<uint16_t> x(size_t(m) * L.d_model);
      for (int t = 0; t < m; ++t)
        std::copy_n(in.x.begin() + pick[size_t(t)] * L.d_model, L.d_model, x.begin() + size_t(t) * L.d_model);
      auto b = CandidateBench::create(*env.dev, env.stream, **layer, w->view(), x);
      FFNJIT_TRY(b);
      auto untuned = (*layer)->make_plan(untuned_choice(**layer, m));
      FFNJIT_TRY(untuned);
      ChoiceSource src = ChoiceSource::kDefault;
      auto served = (*layer)->plan(bucket_index(default_buckets(), m), lookup, [&](ChoiceSource s) { src = s; });
      FFNJIT_TRY(served);
      src = (*served)->source;
      row.tuned_source = src == ChoiceSource::kLayer ? "layer record" : src == ChoiceSource::kShape ? "shape record"
                                                                                                    : "no record";
      FFNJIT_TRY(time_row(*b, **untuned, **served, o.measure, row));
      rows.push_back(row);
      if (progress) progress(row, int(rows.size()), total);
      return {};
    };
    for (int m : o.tokens) {
      // A random subset of the captured rows (with replacement beyond their number).
      std::vector<size_t> pick(per_row->size());
      std::iota(pick.begin(), pick.end(), 0);
      std::shuffle(pick.begin(), pick.end(), rng);
      while (pick.size() < size_t(m)) pick.insert(pick.end(), pick.begin(), pick.begin() + std::min(pick.size(), size_t(m) - pick.size()));
      FFNJIT_TRY(run("random", m, pick));
    }
    for (int n : o.heaviest)
      if (size_t(n) <= heaviest.size()) FFNJIT_TRY(run("heaviest", n, heaviest));
  }
  return rows;
}

}  // namespace

Expected<std::vector<BenchRow>> run_bench(const BenchOptions& o,
                                          const std::function<void(const BenchRow&, int, int)>& progress) {
  auto env = open_env(o.device);
  FFNJIT_TRY(env);
  if (!o.checkpoint.empty()) return run_checkpoint(**env, o, progress);
  return run_synthetic(**env, o, progress);
}

}  // namespace ffnjit
