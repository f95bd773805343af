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
#include "model/safetensors.hpp"
#include "runtime/buckets.hpp"
#include "support/bf16.hpp"
#include "support/rng.hpp"
#include "tests/gpu/gpu_harness.hpp"
#include "tuner/plan.hpp"
#include "tuner/tune.hpp"

using namespace ffnjit;

namespace {

// Registers a gated checkpoint layer from device copies of its weights, as an engine does
// (the copies may go once registered).
ffnjit_status register_gated(ffnjit_context* ctx, const model::LayerWeights& w, const char* layer_id,
                             ffnjit_layer** out) {
  const size_t bytes = size_t(w.d_model) * w.d_ff * 2;
  auto wg = *DeviceBuffer::alloc(bytes), wu = *DeviceBuffer::alloc(bytes), wd = *DeviceBuffer::alloc(bytes);
  REQUIRE(wg.upload(w.wg.data(), bytes));
  REQUIRE(wu.upload(w.wu.data(), bytes));
  REQUIRE(wd.upload(w.wd.data(), bytes));
  ffnjit_layer_desc d{};
  d.d_model = w.d_model, d.d_ff = w.d_ff, d.gated = 1, d.dtype = FFNJIT_BF16;
  d.gate_proj = reinterpret_cast<void*>(wg.ptr()), d.up_proj = reinterpret_cast<void*>(wu.ptr());
  d.down_proj = reinterpret_cast<void*>(wd.ptr());
  d.layer_id = layer_id;
  return ffnjit_layer_register(ctx, &d, out);
}

}  // namespace

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
    ids.push_back(std::string(fingerprint) + ":" + std::to_string(L.index));
    ffnjit_layer* l = nullptr;
    INFO(ffnjit_last_error());
    REQUIRE(register_gated(ctx, *w, ids.back().c_str(), &l) == FFNJIT_STATUS_OK);
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
    ffnjit_layer* l = nullptr;
    REQUIRE(register_gated(ctx, w, nullptr, &l) == FFNJIT_STATUS_OK);
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
    ffnjit_layer* bad = nullptr;
    CHECK(register_gated(ctx, host[0], "3fa9:0", &bad) == FFNJIT_STATUS_INVALID_ARGUMENT);
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
    ffnjit_layer* l = nullptr;
    REQUIRE(register_gated(ctx, w, nullptr, &l) == FFNJIT_STATUS_OK);
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

TEST_CASE("gpu: tune a biased OPT-like checkpoint, then serve it cache-only with its biases") {
  std::string why;
  test::Gpu* g = test::gpu(&why);
  if (!g) {
    std::printf("[SKIP] no GPU: %s\n", why.c_str());
    return;
  }
  // Two non-gated layers with fc1/fc2 biases (OPT naming, bf16), ReLU.
  const std::string dir = "/tmp/ffnjit-test-tune-opt-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/ckpt");
  const int dm = 256, dff = 776;  // d_ff not a multiple of the TwELL tile
  std::vector<std::vector<uint16_t>> data;
  std::vector<st::WriteTensor> tensors;
  auto bf16_vec = [](const std::vector<float>& v) {
    std::vector<uint16_t> out;
    for (float f : v) out.push_back(float_to_bf16(f));
    return out;
  };
  SplitMix64 rng{123};
  for (int l = 0; l < 2; ++l) {
    synth::Layer L = synth::make_layer(dm, dff, false, 0.02, 50 + l);
    std::vector<float> b1(dff), b2(dm);
    for (auto& b : b1) b = float(rng.normal() * 0.25);
    for (auto& b : b2) b = float(rng.normal() * 0.05);
    const std::string p = "model.decoder.layers." + std::to_string(l) + ".";
    for (auto [name, v, shape] :
         {std::tuple{p + "fc1.weight", L.wu, std::vector<int64_t>{dff, dm}},
          std::tuple{p + "fc1.bias", bf16_vec(b1), std::vector<int64_t>{dff}},
          std::tuple{p + "fc2.weight", L.wd, std::vector<int64_t>{dm, dff}},
          std::tuple{p + "fc2.bias", bf16_vec(b2), std::vector<int64_t>{dm}}}) {
      data.push_back(v);
      tensors.push_back({name, st::Dtype::kBF16, shape, {}});
    }
  }
  for (size_t i = 0; i < tensors.size(); ++i)
    tensors[i].bytes =
        std::string_view(reinterpret_cast<const char*>(data[i].data()), data[i].size() * 2);
  REQUIRE(st::write_file(dir + "/ckpt/model.safetensors", tensors));
  {
    std::FILE* f = std::fopen((dir + "/ckpt/config.json").c_str(), "w");
    REQUIRE(f);
    std::fprintf(
        f, R"({"model_type": "opt", "activation_function": "relu", "hidden_size": %d, "ffn_dim": %d,
                        "num_hidden_layers": 2})",
        dm, dff);
    std::fclose(f);
  }
  TuneOptions o;
  o.checkpoint = dir + "/ckpt";
  o.cache_path = dir + "/cache.db";
  o.buckets = *parse_buckets("1-16,17-1024,1025+");
  o.measure.samples = 3;
  auto tuned = run_tune(o, {});
  INFO((tuned ? std::string() : tuned.error().message));
  REQUIRE(tuned);  // biased layers are tuned, no longer refused
  CHECK(tuned->rows.size() == 2 * 3);  // per layer

  // Serve cache-only: the tuned biased kernels (and the dense fallback's plans) are all
  // there, and every output carries both biases.
  auto ckpt = model::Checkpoint::open(o.checkpoint);
  REQUIRE(ckpt);
  ffnjit_context_options co;
  ffnjit_context_options_init(&co);
  co.cache_path = o.cache_path.c_str();
  co.miss_policy = FFNJIT_CACHE_ONLY;
  ffnjit_context* ctx = nullptr;
  REQUIRE(ffnjit_context_create(&co, &ctx) == FFNJIT_STATUS_OK);
  const drv::Api* cu = g->device->api();
  for (const auto& L : ckpt->info().layers) {
    auto w = ckpt->load_layer(L.index);
    REQUIRE(w);
    REQUIRE(w->up_bias.size() == size_t(dff));
    const size_t bytes = size_t(dm) * dff * 2;
    auto wu = *DeviceBuffer::alloc(bytes), wd = *DeviceBuffer::alloc(bytes);
    auto bu = *DeviceBuffer::alloc(dff * 2), bd = *DeviceBuffer::alloc(dm * 2);
    REQUIRE(wu.upload(w->wu.data(), bytes));
    REQUIRE(wd.upload(w->wd.data(), bytes));
    const auto hu = bf16_vec(w->up_bias), hd = bf16_vec(w->down_bias);
    REQUIRE(bu.upload(hu.data(), hu.size() * 2));
    REQUIRE(bd.upload(hd.data(), hd.size() * 2));
    ffnjit_layer_desc d{};
    d.d_model = dm, d.d_ff = dff, d.gated = 0, d.dtype = FFNJIT_BF16;
    d.up_proj = reinterpret_cast<void*>(wu.ptr()), d.down_proj = reinterpret_cast<void*>(wd.ptr());
    d.up_bias = reinterpret_cast<void*>(bu.ptr()), d.down_bias = reinterpret_cast<void*>(bd.ptr());
    const std::string id = tuned->fingerprint + ":" + std::to_string(L.index);  // as ffnjit.h says
    d.layer_id = id.c_str();
    ffnjit_layer* l = nullptr;
    INFO(ffnjit_last_error());
    REQUIRE(ffnjit_layer_register(ctx, &d, &l) == FFNJIT_STATUS_OK);
    for (const auto& b : default_buckets()) {
      const int m = b.max_tokens >= (1 << 30) ? b.min_tokens + 3 : b.max_tokens;
      auto xh = synth::make_inputs(m, dm, 7 * m + L.index);
      auto x = *DeviceBuffer::alloc(xh.size() * 2), out = *DeviceBuffer::alloc(xh.size() * 2);
      REQUIRE(x.upload(xh.data(), xh.size() * 2));
      size_t ws_bytes = 0;
      INFO("bucket " << format_bucket(b) << " layer " << L.index << ": " << ffnjit_last_error());
      REQUIRE(ffnjit_layer_workspace_size(l, m, &ws_bytes) == FFNJIT_STATUS_OK);
      auto ws = *DeviceBuffer::alloc(std::max<size_t>(ws_bytes, 256));
      REQUIRE(ffnjit_ffn_forward(
                  l, reinterpret_cast<void*>(x.ptr()), reinterpret_cast<void*>(out.ptr()), m,
                  reinterpret_cast<void*>(ws.ptr()), ws.size(), g->stream) == FFNJIT_STATUS_OK);
      REQUIRE(cu->cuStreamSynchronize(g->stream) == CUDA_SUCCESS);
      std::vector<uint16_t> y(xh.size());
      REQUIRE(out.download(y.data(), y.size() * 2));
      CHECK(test::relative_error(w->view(), xh, y, m) <= 1e-2);
      ref::FfnWeights no_bias = w->view();
      no_bias.up_bias = nullptr, no_bias.down_bias = nullptr;
      CHECK(test::relative_error(no_bias, xh, y, m) > 0.05);
    }
    ffnjit_layer_destroy(l);
  }
  ffnjit_context_stats st{};
  REQUIRE(ffnjit_context_get_stats(ctx, &st) == FFNJIT_STATUS_OK);
  CHECK(st.kernels_compiled == 0);
  CHECK(st.tuned_buckets == int64_t(2 * default_buckets().size()));
  ffnjit_context_destroy(ctx);
  std::filesystem::remove_all(dir);
}
