// gpu tier: `ffnjit tune` on the demo checkpoint completes, resumes after an
// interruption without redoing entries, and the runtime then serves every bucket
// from the cache with no compile.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "ffnjit/ffnjit.h"
#include "model/checkpoint.hpp"
#include "model/demo.hpp"
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
  REQUIRE(model::write_demo_checkpoint(dir + "/ckpt", {}));
  const std::string db = dir + "/cache.db";

  TuneOptions o;
  o.checkpoint = dir + "/ckpt";
  o.cache_path = db;
  o.buckets = *parse_buckets("1,2-4,5-16,17-64,65-256,257-1024,1025-4096,4097+");
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
  CHECK(first->entries_left == 6);

  stop = false;
  auto second = run_tune(o, {});
  REQUIRE(second);
  REQUIRE(second->rows.size() == 8);
  int resumed = 0;
  for (const auto& r : second->rows) {
    INFO(r.signature << " " << r.bucket << " " << r.winner << " " << r.winner_us << " us, dense " << r.dense_us);
    resumed += r.resumed;
    CHECK_FALSE(r.untimed);
    // Never meaningfully slower than dense: the tuner falls back to dense instead.
    CHECK(r.winner_us <= r.dense_us * 1.03);
    std::printf("  %-10s %-50s %9.1f us  dense %9.1f us  %.2fx\n", r.bucket.c_str(), r.winner.c_str(), r.winner_us,
                r.dense_us, r.speedup());
  }
  CHECK(resumed == 2);

  // Serve: a fresh context on the tuned cache, every layer, one token count per bucket.
  auto ckpt = model::Checkpoint::open(o.checkpoint);
  REQUIRE(ckpt);
  ffnjit_context_options co;
  ffnjit_context_options_init(&co);
  co.cache_path = db.c_str();
  co.miss_policy = FFNJIT_CACHE_ONLY;
  ffnjit_context* ctx = nullptr;
  REQUIRE(ffnjit_context_create(&co, &ctx) == FFNJIT_STATUS_OK);
  const drv::Api* cu = g->device->api();
  std::vector<ffnjit_layer*> layers;
  std::vector<model::LayerWeights> host;
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
  CHECK(st.default_buckets == 0);
  std::printf("served %lld (layer, bucket) pairs from tuned records; %lld kernels from the cache, %lld compiled\n",
              (long long)st.tuned_buckets, (long long)st.kernels_from_cache, (long long)st.kernels_compiled);
  for (auto* l : layers) ffnjit_layer_destroy(l);
  ffnjit_context_destroy(ctx);
  std::filesystem::remove_all(dir);
}
