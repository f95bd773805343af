// `ffnjit tune`: sources (checkpoint, profile, captured inputs) -> plan (per layer and
// bucket) -> per layer: compile candidates in parallel, time them on the layer's own
// inputs through runtime::Layer with a correctness gate, re-time the finalists on
// held-out inputs -> store binaries and winners -> shape records. Each finished entry
// is committed at once, so an interrupted run resumes where it stopped.
#include "tuner/tune.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include "cache/cache.hpp"
#include "codegen/version.hpp"
#include "model/checkpoint.hpp"
#include "model/profile.hpp"
#include "model/profiler.hpp"
#include "model/safetensors.hpp"
#include "model/reference.hpp"
#include "runtime/cache_io.hpp"
#include "runtime/choice.hpp"
#include "runtime/dense_ffn.hpp"
#include "runtime/device_weights.hpp"
#include "runtime/identity.hpp"
#include "runtime/layer.hpp"
#include "support/bf16.hpp"
#include "tuner/candidate.hpp"
#include "tuner/plan.hpp"
#include "tuner/search.hpp"
#include "tuner/select.hpp"

namespace ffnjit {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Compiled {
  Source source;
  CompiledKernel kernel;
};

// Compiles specs on all host cores; results are picked up in submission order while
// the GPU measures earlier candidates.
class CompilePool {
 public:
  explicit CompilePool(int threads) {
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~CompilePool() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }
  std::shared_future<Expected<Compiled>> submit(const KernelSpec& spec) {
    std::lock_guard<std::mutex> l(mu_);
    const std::string key = spec.canonical();
    if (auto it = done_.find(key); it != done_.end()) return it->second;
    auto task = std::make_shared<std::packaged_task<Expected<Compiled>()>>([spec]() -> Expected<Compiled> {
      auto src = generate_source(spec);
      FFNJIT_TRY(src);
      auto k = compile(*src);
      FFNJIT_TRY(k);
      return Compiled{std::move(*src), std::move(*k)};
    });
    auto fut = task->get_future().share();
    done_.emplace(key, fut);
    queue_.push_back([task] { (*task)(); });
    cv_.notify_one();
    return fut;
  }

 private:
  void work() {
    while (true) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::map<std::string, std::shared_future<Expected<Compiled>>> done_;
  std::vector<std::thread> workers_;
  bool stop_ = false;
};

// Loads a compiled spec into the table, waiting for its compile; errors name the kernel.
// (A kernel that spills is rejected by the candidate check, CandidateBench::check_and_time,
// except in the untuned default.)
Status load(KernelTable& table, CompilePool& pool, const KernelSpec& spec, cache::Cache& cache) {
  auto c = pool.submit(spec).get();
  if (!c) return c.error();
  FFNJIT_TRY(cache.put_binary(to_record(c->kernel, c->source)));
  auto l = table.add(spec, c->kernel);
  FFNJIT_TRY(l);
  return {};
}

// Owns a stream on every exit path.
struct StreamGuard {
  const drv::Api* cu = nullptr;
  CUstream stream = nullptr;
  ~StreamGuard() {
    if (stream) cu->cuStreamDestroy(stream);
  }
};

// What the candidates are checked and timed with, read before anything is tuned.
struct Sources {
  std::optional<model::Checkpoint> ckpt;
  std::optional<profile::Profile> prof;
  std::map<int, model::LayerInputs> captured;
  std::string input_source;
};

Expected<Sources> open_sources(const TuneOptions& o) {
  Sources src;
  auto ckpt = model::Checkpoint::open(o.checkpoint);
  FFNJIT_TRY(ckpt);
  src.ckpt.emplace(std::move(*ckpt));
  const model::ModelInfo& info = src.ckpt->info();
  if (!o.profile.empty()) {
    auto p = profile::read(o.profile);
    FFNJIT_TRY(p);
    if (p->fingerprint != info.fingerprint)
      return user_error("profile " + o.profile + " was measured on another checkpoint (fingerprint " +
                        p->fingerprint.substr(0, 12) + ", this one " + info.fingerprint.substr(0, 12) +
                        "); run `ffnjit profile` on this checkpoint");
    src.prof = std::move(*p);
  }
  // Real activations when the checkpoint comes with captured inputs.
  std::string inputs_path = o.inputs;
  if (inputs_path.empty() && ::access((o.checkpoint + "/inputs.safetensors").c_str(), R_OK) == 0)
    inputs_path = o.checkpoint + "/inputs.safetensors";
  src.input_source = o.compile_only ? "nothing (--compile-only)" : "Gaussian inputs (no captured inputs given)";
  if (!inputs_path.empty() && !o.compile_only) {
    auto store = st::Store::open(inputs_path);
    FFNJIT_TRY(store);
    auto in = model::load_layer_inputs(*store, info);
    if (!in) return Error{in.error().kind, inputs_path + ": " + in.error().message};
    for (auto& li : *in) src.captured[li.layer] = std::move(li);
    src.input_source = "captured inputs from " + inputs_path + " (each layer its own; finalists re-timed on held-out rows)";
  }
  return src;
}

// One layer (or shard) in host memory, for the GPU copy and the fp64 reference.
struct HostLayer {
  LayerShape shape;  // with the layer's activation and biases
  model::LayerWeights w;
  ref::FfnWeights view() const { return w.view(); }
  HostFfnWeights host() const { return host_weights(w, shape); }
};

// The shard of layer `e.layer_index` that `e` tunes: rows [r f, (r + 1) f) of Wg and Wu
// (and their biases) and the same columns of Wd, f = d_ff / tp_size; the down bias on
// rank 0 only (a TP engine adds it once).
Expected<HostLayer> load_host_layer(const model::Checkpoint& ckpt, const PlanEntry& e) {
  auto w = ckpt.load_layer(e.layer_index);
  FFNJIT_TRY(w);
  HostLayer h;
  h.shape = e.layer;
  if (e.tp_size == 1) {
    h.w = std::move(*w);
    return h;
  }
  const size_t dm = size_t(w->d_model), f = size_t(e.layer.d_ff), f0 = size_t(e.tp_rank) * f;
  model::LayerWeights s = *w;
  auto rows = [&](const std::vector<uint16_t>& m) {
    return std::vector<uint16_t>(m.begin() + f0 * dm, m.begin() + (f0 + f) * dm);
  };
  auto range = [&](const std::vector<float>& v) {
    return v.empty() ? v : std::vector<float>(v.begin() + f0, v.begin() + f0 + f);
  };
  s.d_ff = int(f);
  if (w->gated) s.wg = rows(w->wg);
  s.wu = rows(w->wu);
  s.wd.resize(dm * f);
  for (size_t d = 0; d < dm; ++d) std::copy_n(w->wd.begin() + d * size_t(w->d_ff) + f0, f, s.wd.begin() + d * f);
  s.gate_bias = range(w->gate_bias), s.up_bias = range(w->up_bias);
  if (e.tp_rank != 0) s.down_bias.clear();
  h.w = std::move(s);
  return h;
}

// `tokens` input rows for an entry: the layer's captured rows (the first half selects,
// the second half is held out), a seeded random sample of them (with replacement beyond
// their number); else unit Gaussian features. Random, not the first rows: captured
// sequences start with their heaviest tokens, which a 1-token bucket would otherwise be
// tuned on alone (seen on the reference model: tuned slower than untuned at 1 token).
std::vector<uint16_t> entry_inputs(const model::LayerInputs* captured, int d_model, int tokens, bool held_out,
                                   uint32_t seed) {
  std::vector<uint16_t> x(size_t(tokens) * d_model);
  if (captured && captured->tokens > 0) {
    const size_t n = size_t(captured->tokens), half = std::max<size_t>(1, n / 2);
    const size_t first = held_out && n > 1 ? half : 0, count = held_out && n > 1 ? n - half : half;
    std::vector<size_t> rows(count);
    for (size_t i = 0; i < count; ++i) rows[i] = first + i;
    std::mt19937_64 pick(uint64_t(seed) * 0x9E3779B97F4A7C15ull + (held_out ? 1 : 0));
    std::shuffle(rows.begin(), rows.end(), pick);
    for (size_t t = 0; t < size_t(tokens); ++t)
      std::copy_n(captured->x.data() + rows[t % count] * d_model, d_model, x.data() + t * d_model);
    return x;
  }
  std::mt19937 rng(seed * 7919u + (held_out ? 104729u : 17u));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& v : x) v = float_to_bf16(nd(rng));
  return x;
}

// One entry: the layer's selection and held-out inputs, then select_choice with the
// compile pool feeding the kernel table.
Expected<Selection> tune_entry(const Device& dev, CUstream stream, Layer& layer, const HostLayer& host,
                               CompilePool& pool, cache::Cache& cache, KernelTable& kernels, const PlanEntry& e,
                               Arch arch, bool from_profile, const model::LayerInputs* captured,
                               const MeasureOptions& mo, uint32_t seed) {
  // Queue every compile up front: the pool works while the GPU measures.
  for (const auto& k : default_sparse_config(e.layer, arch, e.bucket).kernel_specs()) pool.submit(k);
  for (const auto& f : format_candidates(e.sparsity, e.bucket, from_profile)) {
    for (const auto& s : gate_candidates(e.layer, arch, e.bucket, f)) pool.submit(s);
    for (const auto& s : up_down_candidates(e.layer, arch, e.bucket, f))
      for (const auto& k : make_pipeline(gate_candidates(e.layer, arch, e.bucket, f)[0], s).kernel_specs())
        pool.submit(k);
  }
  auto select = CandidateBench::create(dev, stream, layer, host.view(),
                                       entry_inputs(captured, e.layer.d_model, e.tokens, false, seed));
  FFNJIT_TRY(select);
  auto hold = CandidateBench::create(dev, stream, layer, host.view(),
                                     entry_inputs(captured, e.layer.d_model, e.tokens, true, seed));
  FFNJIT_TRY(hold);
  // The finalists are also timed at the bucket's low end, on held-out rows.
  std::optional<CandidateBench> low;
  if (const int lt = low_end_tokens(e.bucket); lt > 0) {
    auto b = CandidateBench::create(dev, stream, layer, host.view(),
                                    entry_inputs(captured, e.layer.d_model, lt, true, seed + 1));
    FFNJIT_TRY(b);
    low.emplace(std::move(*b));
  }
  return select_choice(
      *select, *hold, e.bucket, e.sparsity, from_profile, mo,
      [&](const Choice& c) -> Status {
        if (c.strategy == Choice::Strategy::kSparse)
          for (const auto& k : c.sparse.kernel_specs()) FFNJIT_TRY(load(kernels, pool, k, cache));
        return {};
      },
      low ? &*low : nullptr);
}

cache::TuningRecord make_record(const cache::ToolchainIdentity& id, const std::string& signature,
                                const BatchBucket& b) {
  cache::TuningRecord rec;
  rec.toolchain = id;
  rec.ffnjit_version = kGeneratorVersion;
  rec.layer_signature = signature;
  rec.bucket_min = b.min_tokens;
  rec.bucket_max = b.max_tokens;
  return rec;
}

// The winner as stored: the choice plus its kernels' binary keys ("keys"), so
// `ffnjit cache` can relate a tuning record to its binaries.
nlohmann::json winner_json(const Choice& c) {
  nlohmann::json j = choice_to_json(c);
  j["keys"] = nlohmann::json::array();
  if (c.strategy == Choice::Strategy::kSparse) {
    for (const auto& s : c.sparse.kernel_specs())
      if (auto src = generate_source(s)) j["keys"].push_back(compile_key(*src));
  }
  return j;
}

// Per shape and bucket, what the layers chose: the shape record serves engines that
// register without a layer id.
struct ShapeVotes {
  LayerShape shape;
  BatchBucket bucket;
  std::map<std::string, std::pair<nlohmann::json, std::vector<double>>> winners;  // winner text -> (winner, times)
  std::vector<double> dense;
  bool untimed = false;
};

// The shape records: for each (shape, bucket) the configuration most layers of that
// shape chose (ties: the one first seen, i.e. the lowest layer).
Status store_shape_records(cache::Cache& cache, const cache::ToolchainIdentity& id,
                           const std::map<std::string, ShapeVotes>& votes) {
  for (const auto& [key, v] : votes) {
    const std::pair<nlohmann::json, std::vector<double>>* best = nullptr;
    for (const auto& [text, w] : v.winners)
      if (!best || w.second.size() > best->second.size()) best = &w;
    if (!best) continue;
    cache::TuningRecord rec = make_record(id, shape_signature(v.shape), v.bucket);
    rec.winner = best->first;
    rec.untimed = v.untimed;
    rec.candidates = nlohmann::json::array({{{"stage", "shape"}, {"layers_choosing", best->second.size()}}});
    if (!v.untimed) {
      double w = 0, d = 0;
      for (double t : best->second) w += t;
      for (double t : v.dense) d += t;
      rec.winner_us = w / double(best->second.size());
      rec.dense_us = v.dense.empty() ? 0 : d / double(v.dense.size());
    }
    FFNJIT_TRY(cache.put_tuning(rec));
  }
  return {};
}

}  // namespace

namespace {

// The target of a run: the cache, the GPU (unless compile-only), the identity records
// are stored under, and the kernels and compiles every layer shares.
struct TuneTarget {
  std::optional<cache::Cache> cache;
  std::unique_ptr<Device> dev;
  Arch arch = Arch::kSm90a;
  cache::ToolchainIdentity id;
  StreamGuard stream;
  std::unique_ptr<CompilePool> pool;
  KernelTable kernels;  // one table for every layer: layers of one shape share binaries
};

Expected<std::unique_ptr<TuneTarget>> open_target(const TuneOptions& o) {
  auto t = std::make_unique<TuneTarget>();
  auto cache = cache::Cache::open(o.cache_path);
  FFNJIT_TRY(cache);
  t->cache.emplace(std::move(*cache));
  t->arch = o.compile_arch;
  t->id = compile_only_identity(t->arch);
  if (!o.compile_only) {
    auto d = Device::open(o.device);
    if (!d)
      return Error{d.error().kind, d.error().message + "; use --compile-only to compile and store the default "
                                                      "kernels without a GPU"};
    t->dev = std::make_unique<Device>(std::move(*d));
    auto a = parse_arch(t->dev->info().arch);
    FFNJIT_TRY(a);
    t->arch = *a;
    t->id = toolchain_identity(t->dev->info());
    t->stream.cu = t->dev->api();
    const drv::Api* cu = t->stream.cu;
    FFNJIT_CU(cuStreamCreate(&t->stream.stream, CU_STREAM_NON_BLOCKING));
  }
  t->pool = std::make_unique<CompilePool>(
      o.compile_threads > 0 ? o.compile_threads : int(std::max(1u, std::thread::hardware_concurrency())));
  cache::Cache* db = &*t->cache;
  const cache::ToolchainIdentity table_id = t->id;
  t->kernels.set_backing({[db, table_id](const std::string& key) -> Expected<std::optional<CompiledKernel>> {
                            auto f = db->find_binary(key, table_id);
                            FFNJIT_TRY(f);
                            if (!f->record) return std::optional<CompiledKernel>();
                            return std::optional<CompiledKernel>(from_record(*f->record));
                          },
                          [db](const Source& src, const CompiledKernel& k) { return db->put_binary(to_record(k, src)); },
                          true});
  return t;
}

void vote(std::map<std::string, ShapeVotes>& votes, const PlanEntry& e, const nlohmann::json& winner, double winner_us,
          double dense_us, bool untimed) {
  auto& v = votes[shape_signature(e.layer) + " " + format_bucket(e.bucket)];
  v.shape = e.layer, v.bucket = e.bucket, v.untimed = untimed;
  auto& w = v.winners[winner.dump()];
  w.first = winner;
  w.second.push_back(winner_us);
  v.dense.push_back(dense_us);
}

// --compile-only: the entry's default configuration, compiled and stored untimed.
Status compile_only_entry(TuneTarget& t, const PlanEntry& e, cache::TuningRecord& rec, TuneRow& row) {
  Choice c{Choice::Strategy::kSparse, default_sparse_config(e.layer, t.arch, e.bucket, e.sparsity)};
  std::vector<std::shared_future<Expected<Compiled>>> futs;
  for (const auto& s : c.sparse.kernel_specs()) futs.push_back(t.pool->submit(s));
  for (auto& f : futs) {
    const auto& k = f.get();
    if (!k) return k.error();
    FFNJIT_TRY(t.cache->put_binary(to_record(k->kernel, k->source)));
  }
  rec.winner = winner_json(c);
  rec.untimed = true;
  FFNJIT_TRY(t.cache->put_tuning(rec));
  row.winner = c.label(), row.untimed = true, row.candidates = 1;
  return {};
}

// The layer being tuned on the GPU: one at a time (its weights and its shard's host copy).
struct LoadedLayer {
  std::string signature;
  std::unique_ptr<Layer> layer;
  HostLayer host;
};

Status ensure_loaded(TuneTarget& t, const model::Checkpoint& ckpt, const PlanEntry& e, LoadedLayer& loaded) {
  if (loaded.signature == e.signature) return {};
  loaded.layer.reset();
  auto h = load_host_layer(ckpt, e);
  FFNJIT_TRY(h);
  loaded.host = std::move(*h);
  LayerOptions lo;
  lo.shape = e.layer, lo.id = e.signature;
  auto l = Layer::create(t.kernels, t.arch, loaded.host.host(), lo, t.stream.stream);
  FFNJIT_TRY(l);
  loaded.layer = std::move(*l);
  loaded.signature = e.signature;
  return {};
}

}  // namespace

Expected<TuneResult> run_tune(const TuneOptions& o, const std::function<void(const TuneProgress&)>& progress) {
  const auto t0 = Clock::now();
  // Phase 1: what the candidates are checked and timed with.
  auto sources = open_sources(o);
  FFNJIT_TRY(sources);
  const model::ModelInfo& info = sources->ckpt->info();
  // Phase 2: the plan (per layer or shard, and bucket), this shard's share of it.
  if (o.shards < 1 || o.shard < 0 || o.shard >= o.shards)
    return user_error("shard " + std::to_string(o.shard) + "/" + std::to_string(o.shards) + " is not i/n with 0 <= i < n");
  auto plan = make_plan(info, o.buckets, sources->prof ? &*sources->prof : nullptr, o.tensor_parallel);
  FFNJIT_TRY(plan);
  std::vector<PlanEntry> entries;
  for (size_t i = 0; i < plan->entries.size(); ++i)
    if (int(i) % o.shards == o.shard) entries.push_back(plan->entries[i]);
  // Phase 3: the cache, the GPU and the shared compile pool and kernel table.
  auto target = open_target(o);
  FFNJIT_TRY(target);
  TuneTarget& t = **target;

  TuneResult result;
  result.input_source = sources->input_source;
  result.entries_planned = int(entries.size());
  result.fingerprint = info.fingerprint;
  std::map<std::string, ShapeVotes> votes;
  LoadedLayer loaded;
  // Phase 4: every entry, committed as it finishes (finished ones are resumed).
  for (size_t i = 0; i < entries.size(); ++i) {
    const PlanEntry& e = entries[i];
    if (progress) progress({int(i), int(entries.size()), e.label() + " " + format_bucket(e.bucket), seconds_since(t0)});
    TuneRow row;
    row.signature = e.signature, row.layers = e.label(), row.bucket = format_bucket(e.bucket);
    row.shape = shape_signature(e.layer);
    cache::TuningRecord rec = make_record(t.id, e.signature, e.bucket);
    auto existing = t.cache->get_tuning(rec.key());
    FFNJIT_TRY(existing);
    if (*existing && (!(*existing)->untimed || o.compile_only)) {
      auto c = choice_from_json((*existing)->winner, e.layer, t.arch, e.bucket);
      row.winner = c ? c->label() : "(unreadable)";
      row.winner_us = (*existing)->winner_us.value_or(0), row.dense_us = (*existing)->dense_us.value_or(0);
      row.untimed = (*existing)->untimed, row.resumed = true;
      if (c) vote(votes, e, (*existing)->winner, row.winner_us, row.dense_us, row.untimed);
      result.rows.push_back(row);
      continue;
    }
    const bool stopped = o.stop && o.stop->load();
    if (stopped || (o.budget_s > 0 && seconds_since(t0) > o.budget_s)) {
      result.entries_left = int(entries.size() - i);
      result.interrupted = stopped;
      break;
    }
    if (o.compile_only) {
      FFNJIT_TRY(compile_only_entry(t, e, rec, row));
      vote(votes, e, rec.winner, 0, 0, true);
      result.rows.push_back(row);
      continue;
    }
    FFNJIT_TRY(ensure_loaded(t, *sources->ckpt, e, loaded));
    const auto it = sources->captured.find(e.layer_index);
    const model::LayerInputs* captured = it != sources->captured.end() ? &it->second : nullptr;
    auto outcome = tune_entry(*t.dev, t.stream.stream, *loaded.layer, loaded.host, *t.pool, *t.cache, t.kernels, e,
                              t.arch, sources->prof.has_value(), captured, o.measure, uint32_t(i));
    if (!outcome) return Error{outcome.error().kind, e.label() + " " + row.bucket + ": " + outcome.error().message};
    rec.winner = winner_json(outcome->winner);
    rec.candidates = outcome->candidates;
    rec.dense_us = outcome->dense_us;
    rec.winner_us = outcome->winner_us;
    FFNJIT_TRY(t.cache->put_tuning(rec));  // committed: a rerun skips this entry
    vote(votes, e, rec.winner, outcome->winner_us, outcome->dense_us, false);
    row.winner = outcome->winner.label(), row.winner_us = outcome->winner_us, row.dense_us = outcome->dense_us;
    row.default_us = outcome->default_us;
    row.candidates = outcome->tried, row.rejected = outcome->rejected;
    result.rows.push_back(row);
  }
  // Phase 5: the shape records for engines without layer ids.
  FFNJIT_TRY(store_shape_records(*t.cache, t.id, votes));
  result.shape_records = int(votes.size());
  if (progress) progress({int(entries.size()), int(entries.size()), "", seconds_since(t0)});
  result.compiles = t.kernels.compiles();
  return result;
}

}  // namespace ffnjit
