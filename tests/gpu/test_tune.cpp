// gpu tier: `ffnjit tune` on the demo checkpoint completes, resumes after an
// interruption without redoing entries, and the runtime then serves every layer and
// bucket from its own tuned record, registered exactly as ffnjit.h tells an engine to
// (layer_id = ffnjit_checkpoint_fingerprint + ":" + layer index), with no compile;
// without a layer_id the shape records serve.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "ffnjit/ffnjit.h"
#include "model/checkpoint.hpp"
#include "model/demo.hpp"
#include "cache/cache.hpp"
#include "model/profile.hpp"
#include "model/specialize.hpp"
#include "runtime/cache_io.hpp"
#include "model/reference.hpp"
#include "runtime/buckets.hpp"
#include "support/bf16.hpp"
#include "tests/gpu/gpu_harness.hpp"
#include "tuner/plan.hpp"
#include "tuner/tune.hpp"

using namespace ffnjit;

TEST_CASE("gpu: tune the demo checkpoint, resume, then serve every bucket without compiling") {
  std::string why;
  test::Gpu* g = test::gpu(&why);
  if (!g) {
    std::printf("[SKIP] no GPU: %s\n", why.c_str());
    return;
  }
  const std::string dir = "/tmp/ffnjit-test-tune-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  model::DemoOptions demo;
  demo.layers = 2;  // per-layer tuning: keep the GPU time of this test small
  REQUIRE(model::write_demo_checkpoint(dir + "/ckpt", demo));
  const std::string db = dir + "/cache.db";

  TuneOptions o;
  o.checkpoint = dir + "/ckpt";
  o.cache_path = db;
  o.buckets = default_buckets();
  o.measure.samples = 5;
  std::atomic<bool> stop{false};
  o.stop = &stop;
  // Interrupt after two entries, as SIGINT does in the CLI.
  auto first = run_tune(o, [&](const TuneProgress& p) {
    if (p.done == 2) stop = true;
  });
  REQUIRE(first);
  CHECK(first->interrupted);
  CHECK(first->rows.size() == 2);
  const size_t entries = 2 * default_buckets().size();
  CHECK(first->entries_left == int(entries) - 2);

  stop = false;
  auto second = run_tune(o, {});
  REQUIRE(second);
  REQUIRE(second->rows.size() == entries);
  int resumed = 0;
  for (const auto& r : second->rows) {
    INFO(r.signature << " " << r.bucket << " " << r.winner << " " << r.winner_us << " us, dense " << r.dense_us);
    resumed += r.resumed;
    CHECK_FALSE(r.untimed);
    // Never meaningfully slower than dense or the untuned default (both re-timed on held-out inputs).
    CHECK(r.winner_us <= r.dense_us * 1.03);
    if (!r.resumed) CHECK(r.winner_us <= r.default_us * 1.03);
    std::printf("  %-10s %-50s %9.1f us  dense %9.1f us  %.2fx\n", r.bucket.c_str(), r.winner.c_str(), r.winner_us,
                r.dense_us, r.speedup());
  }
  CHECK(resumed == 2);

  // Serve: a fresh context on the tuned cache, every layer, one token count per bucket,
  // each layer under the id the header describes.
  auto ckpt = model::Checkpoint::open(o.checkpoint);
  REQUIRE(ckpt);
  char fingerprint[65] = {0};
  REQUIRE(ffnjit_checkpoint_fingerprint(o.checkpoint.c_str(), fingerprint, sizeof fingerprint) == FFNJIT_STATUS_OK);
  CHECK(std::string(fingerprint) == second->fingerprint);
  ffnjit_context_options co;
  ffnjit_context_options_init(&co);
  co.cache_path = db.c_str();
  co.miss_policy = FFNJIT_CACHE_ONLY;
  ffnjit_context* ctx = nullptr;
  REQUIRE(ffnjit_context_create(&co, &ctx) == FFNJIT_STATUS_OK);
  const drv::Api* cu = g->device->api();
  std::vector<ffnjit_layer*> layers;
  std::vector<model::LayerWeights> host;
  std::vector<std::string> ids;
  for (const auto& L : ckpt->info().layers) {
    auto w = ckpt->load_layer(L.index);
    REQUIRE(w);
    const size_t bytes = size_t(L.d_model) * L.d_ff * 2;
    auto wg = *DeviceBuffer::alloc(bytes), wu = *DeviceBuffer::alloc(bytes), wd = *DeviceBuffer::alloc(bytes);
    REQUIRE(wg.upload(w->wg.data(), bytes));
    REQUIRE(wu.upload(w->wu.data(), bytes));
    REQUIRE(wd.upload(w->wd.data(), bytes));
    ffnjit_layer_desc d{};
    d.d_model = L.d_model, d.d_ff = L.d_ff, d.gated = 1, d.dtype = FFNJIT_BF16;
    d.gate_proj = reinterpret_cast<void*>(wg.ptr()), d.up_proj = reinterpret_cast<void*>(wu.ptr());
    d.down_proj = reinterpret_cast<void*>(wd.ptr());
    ids.push_back(std::string(fingerprint) + ":" + std::to_string(L.index));
    d.layer_id = ids.back().c_str();
    ffnjit_layer* l = nullptr;
    INFO(ffnjit_last_error());
    REQUIRE(ffnjit_layer_register(ctx, &d, &l) == FFNJIT_STATUS_OK);
    layers.push_back(l);
    host.push_back(std::move(*w));
  }
  for (const auto& b : default_buckets()) {
    const int m = b.max_tokens >= (1 << 30) ? b.min_tokens + 3 : b.max_tokens;
    for (size_t i = 0; i < layers.size(); ++i) {
      const int dm = host[i].d_model;
      auto xh = synth::make_inputs(m, dm, 11 * m + int(i));
      auto x = *DeviceBuffer::alloc(xh.size() * 2), out = *DeviceBuffer::alloc(xh.size() * 2);
      REQUIRE(x.upload(xh.data(), xh.size() * 2));
      size_t ws_bytes = 0;
      INFO("bucket " << format_bucket(b) << " layer " << i << ": " << ffnjit_last_error());
      REQUIRE(ffnjit_layer_workspace_size(layers[i], m, &ws_bytes) == FFNJIT_STATUS_OK);
      auto ws = *DeviceBuffer::alloc(std::max<size_t>(ws_bytes, 256));
      REQUIRE(ffnjit_ffn_forward(layers[i], reinterpret_cast<void*>(x.ptr()), reinterpret_cast<void*>(out.ptr()), m,
                                 reinterpret_cast<void*>(ws.ptr()), ws.size(), g->stream) == FFNJIT_STATUS_OK);
      REQUIRE(cu->cuStreamSynchronize(g->stream) == CUDA_SUCCESS);
      std::vector<uint16_t> y(xh.size());
      REQUIRE(out.download(y.data(), y.size() * 2));
      std::vector<int> check = {0, m - 1};
      std::vector<double> ref(check.size() * dm);
      ref::ffn_forward(host[i].view(), xh.data(), check, ref.data());
      double num = 0, den = 0;
      for (size_t c = 0; c < check.size(); ++c)
        for (int d = 0; d < dm; ++d) {
          const double e = bf16_to_float(y[size_t(check[c]) * dm + d]) - ref[c * dm + d];
          num += e * e, den += ref[c * dm + d] * ref[c * dm + d];
        }
      CHECK(std::sqrt(num / std::max(den, 1e-30)) <= 1e-2);
    }
  }
  ffnjit_context_stats st{};
  REQUIRE(ffnjit_context_get_stats(ctx, &st) == FFNJIT_STATUS_OK);
  CHECK(st.kernels_compiled == 0);
  CHECK(st.tuned_buckets == int64_t(layers.size() * default_buckets().size()));
  CHECK(st.shape_buckets == 0);
  CHECK(st.default_buckets == 0);
  std::printf("served %lld (layer, bucket) pairs from tuned records; %lld kernels from the cache, %lld compiled\n",
              (long long)st.tuned_buckets, (long long)st.kernels_from_cache, (long long)st.kernels_compiled);
  for (auto* l : layers) ffnjit_layer_destroy(l);
  ffnjit_context_destroy(ctx);

  // Without a layer_id, the shape records serve (docs/identity.md), still without compiling.
  {
    REQUIRE(ffnjit_context_create(&co, &ctx) == FFNJIT_STATUS_OK);
    const auto& w = host[0];
    const size_t bytes = size_t(w.d_model) * w.d_ff * 2;
    auto wg = *DeviceBuffer::alloc(bytes), wu = *DeviceBuffer::alloc(bytes), wd = *DeviceBuffer::alloc(bytes);
    REQUIRE(wg.upload(w.wg.data(), bytes));
    REQUIRE(wu.upload(w.wu.data(), bytes));
    REQUIRE(wd.upload(w.wd.data(), bytes));
    ffnjit_layer_desc d{};
    d.d_model = w.d_model, d.d_ff = w.d_ff, d.gated = 1, d.dtype = FFNJIT_BF16;
    d.gate_proj = reinterpret_cast<void*>(wg.ptr()), d.up_proj = reinterpret_cast<void*>(wu.ptr());
    d.down_proj = reinterpret_cast<void*>(wd.ptr());
    ffnjit_layer* l = nullptr;
    REQUIRE(ffnjit_layer_register(ctx, &d, &l) == FFNJIT_STATUS_OK);
    for (const auto& b : default_buckets()) {
      size_t ws_bytes = 0;
      REQUIRE(ffnjit_layer_workspace_size(l, b.min_tokens, &ws_bytes) == FFNJIT_STATUS_OK);
    }
    REQUIRE(ffnjit_context_get_stats(ctx, &st) == FFNJIT_STATUS_OK);
    CHECK(st.shape_buckets == int64_t(default_buckets().size()));
    CHECK(st.tuned_buckets == 0);
    CHECK(st.default_buckets == 0);
    CHECK(st.kernels_compiled == 0);
    // A layer id the grammar refuses is an error, not a silent default.
    d.layer_id = "3fa9:0";
    ffnjit_layer* bad = nullptr;
    CHECK(ffnjit_layer_register(ctx, &d, &bad) == FFNJIT_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(ffnjit_last_error()).find("fingerprint") != std::string::npos);
    ffnjit_layer_destroy(l);
    ffnjit_context_destroy(ctx);
  }

  // Serving counters close the loop: serve with count_sparsity, export a profile,
  // and tune from it (per-layer capacity classes).
  co.miss_policy = FFNJIT_COMPILE_ON_MISS;
  co.count_sparsity = 1;
  const std::string counters_db = dir + "/counters.db";  // no tuned records: the sparse defaults serve
  co.cache_path = counters_db.c_str();
  REQUIRE(ffnjit_context_create(&co, &ctx) == FFNJIT_STATUS_OK);
  layers.clear();
  uint64_t served = 0, expected_active = 0;
  for (size_t i = 0; i < host.size(); ++i) {
    const auto& w = host[i];
    const size_t bytes = size_t(w.d_model) * w.d_ff * 2;
    auto wg = *DeviceBuffer::alloc(bytes), wu = *DeviceBuffer::alloc(bytes), wd = *DeviceBuffer::alloc(bytes);
    REQUIRE(wg.upload(w.wg.data(), bytes));
    REQUIRE(wu.upload(w.wu.data(), bytes));
    REQUIRE(wd.upload(w.wd.data(), bytes));
    ffnjit_layer_desc d{};
    d.d_model = w.d_model, d.d_ff = w.d_ff, d.gated = 1, d.dtype = FFNJIT_BF16;
    d.gate_proj = reinterpret_cast<void*>(wg.ptr()), d.up_proj = reinterpret_cast<void*>(wu.ptr());
    d.down_proj = reinterpret_cast<void*>(wd.ptr());
    ffnjit_layer* l = nullptr;
    REQUIRE(ffnjit_layer_register(ctx, &d, &l) == FFNJIT_STATUS_OK);
    layers.push_back(l);
    for (int m : {1, 300}) {
      auto xh = synth::make_inputs(m, w.d_model, 5 * m + int(i));
      auto x = *DeviceBuffer::alloc(xh.size() * 2), out = *DeviceBuffer::alloc(xh.size() * 2);
      REQUIRE(x.upload(xh.data(), xh.size() * 2));
      size_t ws_bytes = 0;
      REQUIRE(ffnjit_layer_workspace_size(l, m, &ws_bytes) == FFNJIT_STATUS_OK);
      auto ws = *DeviceBuffer::alloc(ws_bytes);
      REQUIRE(ffnjit_ffn_forward(l, reinterpret_cast<void*>(x.ptr()), reinterpret_cast<void*>(out.ptr()), m,
                                 reinterpret_cast<void*>(ws.ptr()), ws_bytes, g->stream) == FFNJIT_STATUS_OK);
      REQUIRE(cu->cuStreamSynchronize(g->stream) == CUDA_SUCCESS);
      if (i == 0) {
        served += m;
        std::vector<double> gate(w.d_ff);
        for (int t = 0; t < m; ++t) {
          ref::gate_row(w.view(), xh.data() + size_t(t) * w.d_model, gate.data());
          for (double v : gate) expected_active += v > 0;
        }
      }
    }
  }
  const std::string prof_path = dir + "/served.json";
  INFO(ffnjit_last_error());
  REQUIRE(ffnjit_export_profile(layers.data(), int(layers.size()), ckpt->info().fingerprint.c_str(),
                                prof_path.c_str()) == FFNJIT_STATUS_OK);
  auto prof = profile::read(prof_path);
  REQUIRE(prof);
  REQUIRE(prof->layers.size() == layers.size());
  const auto& l0 = prof->layers[0];
  CHECK(l0.tokens == served);
  const double seen = l0.per_token.mean() * double(l0.tokens);
  CHECK(std::fabs(seen - double(expected_active)) <= 0.01 * double(expected_active) + 2);
  REQUIRE(l0.tiling(128));
  uint64_t neuron_total = 0;
  for (uint64_t v : l0.neuron_active) neuron_total += v;
  CHECK(neuron_total <= uint64_t(seen + 0.5));
  CHECK(neuron_total >= uint64_t(0.95 * seen));  // only tiles over capacity lose neurons here
  std::printf("serving counters: %llu tokens, %.2f active per token (fp64 reference %.2f); profile %s\n",
              (unsigned long long)l0.tokens, l0.per_token.mean(), double(expected_active) / double(served),
              prof_path.c_str());
  for (auto* l : layers) ffnjit_layer_destroy(l);
  ffnjit_context_destroy(ctx);

  TuneOptions po = o;
  po.profile = prof_path;
  po.compile_only = true;
  po.cache_path = dir + "/profiled.db";
  po.stop = nullptr;
  auto tuned = run_tune(po, {});
  INFO((tuned ? std::string() : tuned.error().message));
  REQUIRE(tuned);
  REQUIRE(!tuned->rows.empty());
  // Per-layer records under the layer ids, each with its own profile-chosen capacity.
  CHECK(tuned->rows[0].signature == std::string(fingerprint) + ":0");
  auto pdb = cache::Cache::open(po.cache_path);
  REQUIRE(pdb);
  auto rec = pdb->find_tuning(compile_only_identity(Arch::kSm90a), tuned->rows[0].signature, 1);
  REQUIRE(rec);
  REQUIRE(rec->record);
  auto cap = model::choose_capacity(*prof->layer(0), 128);
  REQUIRE(cap);
  CHECK(rec->record->winner.at("capacity").get<int>() == cap->capacity);
  std::filesystem::remove_all(dir);
}
