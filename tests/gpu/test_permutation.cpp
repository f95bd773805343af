// gpu tier (issue 6): on the demo checkpoint, the profile's neuron permutation lowers
// the maximum per-tile count on the tokens it was fitted to, and the permuted FFN
// computes the same output on the GPU; the GPU gate gives the CPU gate's profile.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "model/checkpoint.hpp"
#include "model/demo.hpp"
#include "model/profiler.hpp"
#include "model/safetensors.hpp"
#include "model/specialize.hpp"
#include "support/bf16.hpp"
#include "tests/gpu/gpu_harness.hpp"
#include "tuner/gpu_gate.hpp"

using namespace ffnjit;

TEST_CASE("gpu: the permutation lowers per-tile counts and leaves the FFN output unchanged") {
  std::string why;
  test::Gpu* g = test::gpu(&why);
  if (!g) {
    std::printf("[SKIP] no GPU: %s\n", why.c_str());
    return;
  }
  const std::string dir = "/tmp/ffnjit-test-perm-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  REQUIRE(model::write_demo_checkpoint(dir, {}));
  auto ckpt = model::Checkpoint::open(dir);
  REQUIRE(ckpt);
  auto store = st::Store::open(dir + "/inputs.safetensors");
  REQUIRE(store);
  auto inputs = model::load_layer_inputs(*store, ckpt->info());
  REQUIRE(inputs);
  model::ProfileOptions po;
  po.tile_widths = {128};
  auto gate = gpu_gate(0);
  REQUIRE(gate);
  auto run = model::profile_checkpoint(*ckpt, *inputs, po, *gate);
  REQUIRE(run);
  // The GPU gate's profile matches the fp64 CPU gate's (up to neurons within rounding of 0).
  auto cpu_run = model::profile_checkpoint(*ckpt, *inputs, po, model::cpu_gate());
  REQUIRE(cpu_run);
  for (size_t l = 0; l < run->profile.layers.size(); ++l) {
    const auto& a = run->profile.layers[l].neuron_active;
    const auto& b = cpu_run->profile.layers[l].neuron_active;
    uint64_t diff = 0, total = 0;
    for (size_t j = 0; j < a.size(); ++j) diff += a[j] > b[j] ? a[j] - b[j] : b[j] - a[j], total += b[j];
    INFO("layer " << l << ": " << diff << " of " << total << " activations differ");
    CHECK(diff <= total / 1000 + 2);
  }

  for (const auto& L : ckpt->info().layers) {
    auto perm = model::find_permutation(run->fit.at(L.index), 128);
    REQUIRE(perm);
    std::printf("layer %d: max per-tile count %u -> %u, p99 %u -> %u (fitted tokens)\n", L.index,
                perm->fit_before.max, perm->fit_after.max, perm->fit_before.p99, perm->fit_after.p99);
    CHECK(perm->fit_after.max <= perm->fit_before.max);
    auto w = ckpt->load_layer(L.index);
    REQUIRE(w);
    model::LayerWeights permuted = *w;
    REQUIRE(model::permute_layer(permuted, perm->new_to_old));
    auto to_synth = [](const model::LayerWeights& lw) {
      synth::Layer s;
      s.d_model = lw.d_model, s.d_ff = lw.d_ff, s.gated = lw.gated, s.wg = lw.wg, s.wu = lw.wu, s.wd = lw.wd;
      return s;
    };
    auto a = test::upload_layer(*g, to_synth(*w));
    auto b = test::upload_layer(*g, to_synth(permuted));
    for (int m : {1, 257}) {
      auto x = synth::make_inputs(m, L.d_model, 1234 + m);
      auto cfg = default_sparse_config({L.d_model, L.d_ff, L.gated}, g->arch, m);
      std::vector<uint16_t> ya, yb;
      auto ra = test::run_sparse_case(*g, *a, cfg, x, m, {}, &ya);
      auto rb = test::run_sparse_case(*g, *b, cfg, x, m, {}, &yb);
      INFO("layer " << L.index << " tokens " << m << ": original " << ra.describe() << "; permuted " << rb.describe());
      CHECK(ra.ok());
      CHECK(rb.ok());
      // The permuted FFN's output is the original's, to rounding (only summation order differs).
      double num = 0, den = 0;
      for (size_t i = 0; i < ya.size(); ++i) {
        const double d = double(bf16_to_float(ya[i])) - bf16_to_float(yb[i]);
        num += d * d, den += double(bf16_to_float(ya[i])) * bf16_to_float(ya[i]);
      }
      CHECK(std::sqrt(num / den) < 1e-2);
    }
  }
  std::filesystem::remove_all(dir);
}
