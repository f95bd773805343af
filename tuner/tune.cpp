// `ffnjit tune`: plan -> compile candidates in parallel -> time them on the GPU with
// a correctness gate -> store binaries and winners in the cache. Each finished entry
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
#include "support/bf16.hpp"
#include "tuner/plan.hpp"
#include "tuner/search.hpp"

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

// Everything one entry's measurement needs on the GPU.
struct Bench {
  Device* dev;
  KernelTable* kernels;
  CUstream stream;
  const DeviceWeights* w;
  int tokens;
  DeviceBuffer x, out, ws;
  std::vector<int> check_tokens;
  std::vector<double> ref;  // [check_tokens][d_model]
  int d_model;
};

double rel_error(const Bench& b, const std::vector<uint16_t>& rows) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.ref.size(); ++i) {
    const double got = bf16_to_float(rows[i]), want = b.ref[i];
    if (!std::isfinite(got)) return INFINITY;
    num += (got - want) * (got - want), den += want * want;
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Output rows of the checked tokens.
Expected<std::vector<uint16_t>> checked_rows(const Bench& b) {
  std::vector<uint16_t> rows(b.check_tokens.size() * b.d_model);
  for (size_t i = 0; i < b.check_tokens.size(); ++i)
    FFNJIT_TRY(b.out.download(rows.data() + i * b.d_model, size_t(b.d_model) * 2,
                              size_t(b.check_tokens[i]) * b.d_model * 2));
  return rows;
}

Status ensure_workspace(Bench& b, size_t bytes) {
  if (b.ws.size() >= bytes) return {};
  auto ws = DeviceBuffer::alloc(bytes);
  FFNJIT_TRY(ws);
  b.ws = std::move(*ws);
  return {};
}

// Runs a full sparse forward once and checks it against the reference.
Status check_sparse(Bench& b, const SparseFfnConfig& cfg) {
  FFNJIT_TRY(ensure_workspace(b, sparse_workspace_bytes(cfg, b.tokens)));
  FFNJIT_TRY(b.out.fill_bytes(0x7f));
  FFNJIT_TRY(sparse_ffn_forward(*b.kernels, cfg, b.w->sparse(), b.x.ptr(), b.out.ptr(), b.tokens, b.ws.ptr(), b.stream));
  const drv::Api* cu = b.dev->api();
  FFNJIT_CU(cuStreamSynchronize(b.stream));
  auto rows = checked_rows(b);
  FFNJIT_TRY(rows);
  const double e = rel_error(b, *rows);
  if (!(e <= 1e-2)) return internal_error("output differs from the fp64 reference (relative error " + std::to_string(e) + ")");
  return {};
}

struct EntryOutcome {
  Choice winner;
  double winner_us = 0, dense_us = 0;
  nlohmann::json candidates = nlohmann::json::array();
  int tried = 0, rejected = 0;
};

// Loads a compiled spec into the table, waiting for its compile; errors name the kernel.
Status load(KernelTable& table, CompilePool& pool, const KernelSpec& spec, cache::Cache& cache) {
  auto c = pool.submit(spec).get();
  if (!c) return c.error();
  if (c->kernel.resources.spills())
    return internal_error(spec.kernel_name() + " spills to local memory; rejected");
  FFNJIT_TRY(cache.put_binary(to_record(c->kernel, c->source)));
  auto l = table.add(spec, c->kernel);
  FFNJIT_TRY(l);
  return {};
}

Expected<EntryOutcome> tune_entry(Bench& b, CompilePool& pool, cache::Cache& cache, const PlanEntry& e, Arch arch,
                                  bool from_profile, DenseFfn& dense, const MeasureOptions& mo) {
  EntryOutcome r;
  auto record = [&](const std::string& stage, const Choice& c, const Expected<Timing>& t) {
    nlohmann::json j = {{"stage", stage}, {"config", choice_to_json(c)}};
    if (t) j["us"] = t->median_us, j["spread"] = t->spread;
    else j["error"] = t.error().message;
    r.candidates.push_back(j);
    ++r.tried;
    r.rejected += !t;
  };
  // Queue every compile up front: the pool works while the GPU measures.
  const auto formats = format_candidates(e.sparsity, e.bucket, from_profile);
  for (const auto& f : formats) {
    for (const auto& s : gate_candidates(e.layer, arch, e.bucket, f)) pool.submit(s);
    for (const auto& s : up_down_candidates(e.layer, arch, e.bucket, f))
      for (const auto& k : make_pipeline(gate_candidates(e.layer, arch, e.bucket, f)[0], s).kernel_specs()) pool.submit(k);
  }
  // Dense baseline, checked like any candidate.
  FFNJIT_TRY(ensure_workspace(b, dense.workspace_bytes(b.tokens)));
  auto run_dense = [&](CUstream s) { return dense.forward(b.w->dense(), b.x.ptr(), b.out.ptr(), b.tokens, b.ws.ptr(), s); };
  auto td = measure_graph(*b.dev, b.stream, run_dense, mo);
  FFNJIT_TRY(td);
  {
    auto rows = checked_rows(b);
    FFNJIT_TRY(rows);
    const double err = rel_error(b, *rows);
    if (!(err <= 1e-2)) return internal_error("the dense baseline disagrees with the fp64 reference (" + std::to_string(err) + ")");
  }
  r.dense_us = td->median_us;
  Choice dense_choice;
  dense_choice.strategy = Choice::Strategy::kDense;
  record("dense", dense_choice, td);

  const SearchResult found = search_sparse(
      e.layer, arch, e.bucket, formats, [&](const SparseFfnConfig& cfg, SearchStage stage) -> Expected<Timing> {
        Expected<Timing> t = [&]() -> Expected<Timing> {
          for (const auto& k : cfg.kernel_specs()) FFNJIT_TRY(load(*b.kernels, pool, k, cache));
          FFNJIT_TRY(check_sparse(b, cfg));  // a candidate counts only once it is correct
          return measure_graph(*b.dev, b.stream, [&](CUstream s) {
            return run_stage(*b.kernels, cfg, stage, b.w->sparse(), b.x.ptr(), b.out.ptr(), b.tokens, b.ws.ptr(), s);
          }, mo);
        }();
        record(stage_name(stage), Choice{Choice::Strategy::kSparse, cfg}, t);
        return t;
      });
  // Never slower than dense: the dense fallback wins ties and losses.
  if (!(found.best_us < r.dense_us)) {
    r.winner = dense_choice;
    r.winner_us = r.dense_us;
  } else {
    r.winner = Choice{Choice::Strategy::kSparse, found.best};
    r.winner_us = found.best_us;
  }
  return r;
}

cache::TuningRecord make_record(const cache::ToolchainIdentity& id, const PlanEntry& e) {
  cache::TuningRecord rec;
  rec.toolchain = id;
  rec.ffnjit_version = kGeneratorVersion;
  rec.layer_signature = e.signature;
  rec.bucket_min = e.bucket.min_tokens;
  rec.bucket_max = e.bucket.max_tokens;
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

std::string layer_list(const std::vector<int>& layers) {
  if (layers.size() == 1) return std::to_string(layers[0]);
  return std::to_string(layers.front()) + ".." + std::to_string(layers.back()) + " (" + std::to_string(layers.size()) + ")";
}

}  // namespace

Expected<TuneResult> run_tune(const TuneOptions& o, const std::function<void(const TuneProgress&)>& progress) {
  const auto t0 = Clock::now();
  auto ckpt = model::Checkpoint::open(o.checkpoint);
  FFNJIT_TRY(ckpt);
  const model::ModelInfo& info = ckpt->info();
  std::optional<profile::Profile> prof;
  if (!o.profile.empty()) {
    auto p = profile::read(o.profile);
    FFNJIT_TRY(p);
    if (p->fingerprint != info.fingerprint)
      return user_error("profile " + o.profile + " was measured on another checkpoint (fingerprint " +
                        p->fingerprint.substr(0, 12) + ", this one " + info.fingerprint.substr(0, 12) +
                        "); run `ffnjit profile` on this checkpoint");
    prof = std::move(*p);
  }
  if (o.shards < 1 || o.shard < 0 || o.shard >= o.shards)
    return user_error("shard " + std::to_string(o.shard) + "/" + std::to_string(o.shards) + " is not i/n with 0 <= i < n");
  auto plan = make_plan(info, o.buckets, prof ? &*prof : nullptr);
  FFNJIT_TRY(plan);
  std::vector<PlanEntry> entries;
  for (size_t i = 0; i < plan->entries.size(); ++i)
    if (int(i) % o.shards == o.shard) entries.push_back(plan->entries[i]);

  // Real activations when the checkpoint comes with captured inputs.
  std::map<int, model::LayerInputs> captured;
  std::string inputs_path = o.inputs;
  if (inputs_path.empty() && ::access((o.checkpoint + "/inputs.safetensors").c_str(), R_OK) == 0)
    inputs_path = o.checkpoint + "/inputs.safetensors";
  TuneResult result;
  result.input_source = o.compile_only ? "nothing (--compile-only)" : "Gaussian inputs (no captured inputs given)";
  if (!inputs_path.empty() && !o.compile_only) {
    auto store = st::Store::open(inputs_path);
    FFNJIT_TRY(store);
    auto in = model::load_layer_inputs(*store, info);
    if (!in) return Error{in.error().kind, inputs_path + ": " + in.error().message};
    for (auto& li : *in) captured[li.layer] = std::move(li);
    result.input_source = "captured inputs from " + inputs_path;
  }

  auto cache = cache::Cache::open(o.cache_path);
  FFNJIT_TRY(cache);

  // The GPU (unless compile-only) and the identity records are stored under.
  std::unique_ptr<Device> dev;
  Arch arch = o.compile_arch;
  cache::ToolchainIdentity id = compile_only_identity(arch);
  if (!o.compile_only) {
    auto d = Device::open(o.device);
    if (!d)
      return Error{d.error().kind, d.error().message + "; use --compile-only to compile and store the default "
                                                      "kernels without a GPU"};
    dev = std::make_unique<Device>(std::move(*d));
    auto a = parse_arch(dev->info().arch);
    FFNJIT_TRY(a);
    arch = *a;
    id = toolchain_identity(dev->info());
  }

  result.entries_planned = int(entries.size());
  result.fingerprint = info.fingerprint;
  CompilePool pool(o.compile_threads > 0 ? o.compile_threads : int(std::max(1u, std::thread::hardware_concurrency())));
  KernelTable kernels;
  cache::Cache* db = &*cache;
  const cache::ToolchainIdentity table_id = id;
  kernels.set_backing({[db, table_id](const std::string& key) -> Expected<std::optional<CompiledKernel>> {
                         auto f = db->find_binary(key, table_id);
                         FFNJIT_TRY(f);
                         if (!f->record) return std::optional<CompiledKernel>();
                         return std::optional<CompiledKernel>(from_record(*f->record));
                       },
                       [db](const Source& src, const CompiledKernel& k) { return db->put_binary(to_record(k, src)); },
                       true});
  CUstream stream = nullptr;
  if (dev) {
    const drv::Api* cu = dev->api();
    FFNJIT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  }
  // Per class: the representative layer's weights on the GPU, host copy for the reference.
  std::map<std::string, std::pair<model::LayerWeights, std::unique_ptr<DeviceWeights>>> loaded;
  std::map<std::string, std::unique_ptr<DenseFfn>> dense;

  for (size_t i = 0; i < entries.size(); ++i) {
    const PlanEntry& e = entries[i];
    if (progress) progress({int(i), int(entries.size()), e.signature + " " + format_bucket(e.bucket), seconds_since(t0)});
    TuneRow row;
    row.signature = e.signature, row.layers = layer_list(e.layers), row.bucket = format_bucket(e.bucket);
    cache::TuningRecord rec = make_record(id, e);
    auto existing = cache->get_tuning(rec.key());
    FFNJIT_TRY(existing);
    if (*existing && (!(*existing)->untimed || o.compile_only)) {
      auto c = choice_from_json((*existing)->winner, e.layer, arch, e.bucket);
      row.winner = c ? c->label() : "(unreadable)";
      row.winner_us = (*existing)->winner_us.value_or(0), row.dense_us = (*existing)->dense_us.value_or(0);
      row.untimed = (*existing)->untimed, row.resumed = true;
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
      Choice c{Choice::Strategy::kSparse, default_sparse_config(e.layer, arch, e.bucket, e.sparsity)};
      std::vector<std::shared_future<Expected<Compiled>>> futs;
      for (const auto& s : c.sparse.kernel_specs()) futs.push_back(pool.submit(s));
      for (auto& f : futs) {
        const auto& k = f.get();
        if (!k) return k.error();
        FFNJIT_TRY(cache->put_binary(to_record(k->kernel, k->source)));
      }
      rec.winner = winner_json(c);
      rec.untimed = true;
      FFNJIT_TRY(cache->put_tuning(rec));
      row.winner = c.label(), row.untimed = true, row.candidates = 1;
      result.rows.push_back(row);
      continue;
    }
    auto& slot = loaded[e.signature];
    if (!slot.second) {
      loaded.clear();  // one class's weights on the GPU at a time
      auto& fresh = loaded[e.signature];
      auto hw = ckpt->load_layer(e.representative);
      FFNJIT_TRY(hw);
      fresh.first = std::move(*hw);
      // Biases and activation with it: the kernels, the dense baseline and the reference
      // all compute the layer's own math.
      auto w = DeviceWeights::upload(kernels, arch, host_weights(fresh.first, e.layer), stream,
                                     /*with_dense=*/true);
      FFNJIT_TRY(w);
      fresh.second = std::make_unique<DeviceWeights>(std::move(*w));
    }
    auto& host = loaded[e.signature].first;
    auto& dn = dense[e.signature];
    if (!dn) {
      auto d = DenseFfn::create(kernels, arch, e.layer);
      FFNJIT_TRY(d);
      dn = std::move(*d);
    }
    Bench b{dev.get(), &kernels, stream, loaded[e.signature].second.get(), e.tokens, {}, {}, {}, {}, {}, e.layer.d_model};
    // Inputs: the representative layer's captured activations (cycled to fill the
    // bucket), else unit Gaussian features, fresh per entry.
    std::vector<uint16_t> xh(size_t(e.tokens) * e.layer.d_model);
    if (auto it = captured.find(e.representative); it != captured.end() && it->second.tokens > 0) {
      const size_t row = size_t(e.layer.d_model), rows = size_t(it->second.tokens);
      for (size_t t = 0; t < size_t(e.tokens); ++t)
        std::copy_n(it->second.x.data() + (t % rows) * row, row, xh.data() + t * row);
    } else {
      std::mt19937 rng(uint32_t(i) * 7919u + 17u);
      std::normal_distribution<float> nd(0.0f, 1.0f);
      for (auto& v : xh) v = float_to_bf16(nd(rng));
    }
    auto x = DeviceBuffer::alloc(xh.size() * 2);
    FFNJIT_TRY(x);
    b.x = std::move(*x);
    FFNJIT_TRY(b.x.upload(xh.data(), xh.size() * 2));
    auto out = DeviceBuffer::alloc(xh.size() * 2);
    FFNJIT_TRY(out);
    b.out = std::move(*out);
    for (int t : {0, e.tokens / 3, e.tokens / 2, e.tokens - 1}) b.check_tokens.push_back(t);
    b.ref.resize(b.check_tokens.size() * e.layer.d_model);
    ref::ffn_forward(host.view(), xh.data(), b.check_tokens, b.ref.data());

    auto outcome = tune_entry(b, pool, *cache, e, arch, prof.has_value(), *dn, o.measure);
    FFNJIT_TRY(outcome);
    rec.winner = winner_json(outcome->winner);
    rec.candidates = outcome->candidates;
    rec.dense_us = outcome->dense_us;
    rec.winner_us = outcome->winner_us;
    FFNJIT_TRY(cache->put_tuning(rec));  // committed: a rerun skips this entry
    row.winner = outcome->winner.label(), row.winner_us = outcome->winner_us, row.dense_us = outcome->dense_us;
    row.candidates = outcome->tried, row.rejected = outcome->rejected;
    result.rows.push_back(row);
  }
  if (progress) progress({int(entries.size()), int(entries.size()), "", seconds_since(t0)});
  result.compiles = kernels.compiles();
  if (stream) dev->api()->cuStreamDestroy(stream);
  return result;
}

}  // namespace ffnjit
