// gpu tier: the sparse FFN kernels against the fp64 CPU reference, with poisoned
// outputs and workspace, at awkward token counts, shapes and adversarial sparsity.
#include <catch2/catch.hpp>

#include <cstdio>
#include <limits>

#include "support/bf16.hpp"
#include "tests/gpu/gpu_harness.hpp"

using namespace ffnjit;
using namespace ffnjit::test;

namespace {

struct Shape {
  int d_model, d_ff;
  bool gated;
};
const Shape kMain{2048, 5632, true};
const Shape kShapes[] = {{2048, 5632, true}, {4096, 14336, true}, {2048, 1408, true}, {512, 1536, true},
                         {768, 3072, false}};

// One uploaded layer at a time: building and uploading the big shapes dominates.
DeviceLayer& layer_for(Gpu& g, const Shape& s, double fraction, uint64_t seed = 1) {
  static std::unique_ptr<DeviceLayer> cached;
  static std::string key;
  const std::string k = std::to_string(s.d_model) + "x" + std::to_string(s.d_ff) + (s.gated ? "g" : "n") + "@" +
                        std::to_string(fraction) + "#" + std::to_string(seed);
  if (key != k) {
    cached.reset();
    cached = upload_layer(g, synth::make_layer(s.d_model, s.d_ff, s.gated, fraction, seed));
    key = k;
  }
  return *cached;
}

void check_case(Gpu& g, const Shape& s, double fraction, int tokens, const synth::InputOptions& in = {},
                const Sparsity& sp = {}) {
  DeviceLayer& L = layer_for(g, s, fraction);
  auto cfg = default_sparse_config({s.d_model, s.d_ff, s.gated}, g.arch, tokens, sp);
  auto x = synth::make_inputs(tokens, s.d_model, uint64_t(tokens) * 7919 + s.d_ff, in);
  CaseResult r = run_sparse_case(g, L, cfg, x, tokens);
  INFO(s.d_model << "x" << s.d_ff << (s.gated ? " gated" : " non-gated") << " active=" << fraction
                 << " tokens=" << tokens << " " << cfg.gate.kernel_name() << " " << cfg.up_down.kernel_name() << ": "
                 << r.describe());
  CHECK(r.ok());
}

// Every pipeline the tuner can pick: {gate_pack, gate_gemv, GEMM + pack} x {up_down with 1, 4
// (a cluster on sm_90a) or 16 (global tickets) tile splits, up + down with 1, 2 or 4
// column splits}, and gate_pack split over a cluster behind the default up/down.
std::vector<SparseFfnConfig> pipelines(const Shape& s, Arch arch, int tokens,
                                       const Sparsity& sp = {}, const LayerShape* math = nullptr) {
  const LayerShape shape = math ? *math : LayerShape{s.d_model, s.d_ff, s.gated};
  const BatchBucket b{tokens, tokens};
  std::vector<SparseFfnConfig> out;
  for (Family gate : {Family::kGatePack, Family::kGateGemv, Family::kPack})
    for (auto [family, splits] : {std::pair{Family::kUpDown, 1}, std::pair{Family::kUpDown, 4},
                                  std::pair{Family::kUpDown, 16}, std::pair{Family::kDown, 1},
                                  std::pair{Family::kDown, 2}, std::pair{Family::kDown, 4}}) {
      // The tuner offers gate_gemv up to 64 tokens; 257 covers several column blocks.
      if (gate == Family::kGateGemv && tokens > 257) continue;
      SparseFfnConfig cfg = default_sparse_config(shape, arch, tokens, sp);
      cfg.gate = default_spec(gate, shape, arch, b, sp);
      cfg.up_down = default_spec(family, shape, arch, b, sp);
      cfg.up_down.tile.splits = family == Family::kUpDown ? std::min(splits, cfg.up_down.n_tiles()) : splits;
      if (cfg.validate()) out.push_back(cfg);
    }
  // The tuner offers gate_pack split over a cluster up to 64 tokens (sm_90a).
  if (arch == Arch::kSm90a && tokens <= 257) {
    SparseFfnConfig cfg = default_sparse_config(shape, arch, tokens, sp);
    cfg.gate = default_spec(Family::kGatePack, shape, arch, b, sp);
    cfg.gate.tile.splits = 4;
    if (cfg.validate()) out.push_back(cfg);
  }
  return out;
}

}  // namespace

TEST_CASE("gpu: every token count on the SparseLM-1.5B shape at 0.5% activity") {
  Gpu* g = need_gpu();
  if (!g) return;
  for (int m : {1, 2, 3, 16, 100, 128, 255, 256, 257, 1000, 2048, 8192, 65536}) check_case(*g, kMain, 0.005, m);
}

TEST_CASE("gpu: every shape at awkward token counts") {
  Gpu* g = need_gpu();
  if (!g) return;
  for (const Shape& s : kShapes)
    for (int m : {1, 3, 16, 255, 257, 2048}) check_case(*g, s, 0.005, m);
  check_case(*g, kShapes[1], 0.005, 8192);
}

TEST_CASE("gpu: sparsity from all-zero to fully dense") {
  Gpu* g = need_gpu();
  if (!g) return;
  for (const Shape& s : {kShapes[0], kShapes[2], kShapes[4]})
    for (double f : {0.0, 0.005, 0.01, 0.05, 0.5, 1.0})
      for (int m : {1, 255, 1000}) check_case(*g, s, f, m);
}

TEST_CASE("gpu: heavy tokens overflow capacity and stay exact") {
  Gpu* g = need_gpu();
  if (!g) return;
  synth::InputOptions heavy;
  heavy.heavy_fraction = 0.2;
  heavy.heavy_scale = 3.0f;  // ~20% of neurons fire on a heavy token: most tiles overflow
  for (const Shape& s : {kShapes[0], kShapes[4]})
    for (int m : {3, 257, 2048}) check_case(*g, s, 0.005, m, heavy);
  // Tiny capacity: nearly every active tile overflows.
  for (int m : {1, 100}) check_case(*g, kMain, 0.01, m, {}, Sparsity{128, 1});
}

// Decode tokens with 1000+ active neurons: the cluster-split up_down spreads each over
// heavy groups (several clusters per token, their partials summed in group order), with
// every tile over capacity; groups off, the default, and fewer groups than tiles need.
TEST_CASE("gpu: heavy decode tokens over heavy groups") {
  Gpu* g = need_gpu();
  if (!g) return;
  if (g->arch != Arch::kSm90a) {
    std::printf("[SKIP] heavy groups run on sm_90a only (this GPU is %s)\n", arch_name(g->arch));
    return;
  }
  for (const Shape& s : {kShapes[0], kShapes[4], kShapes[3]}) {
    DeviceLayer& L = layer_for(*g, s, 0.005);
    for (int m : {1, 3, 16, 33, 64})
      for (double heavy_fraction : {0.3, 1.0}) {
        synth::InputOptions in;
        in.heavy_fraction = heavy_fraction, in.heavy_scale = 3.0f;
        const auto x = synth::make_inputs(m, s.d_model, 31 * m + int(heavy_fraction * 10), in);
        const auto base = default_sparse_config({s.d_model, s.d_ff, s.gated}, g->arch, m);
        for (int heavy_splits : {0, base.heavy_splits, 2 * base.up_down.tile.splits}) {
          SparseFfnConfig cfg = base;
          cfg.heavy_splits = heavy_splits;
          INFO(s.d_model << "x" << s.d_ff << " tokens=" << m << " heavy=" << heavy_fraction << " "
                         << cfg.describe() << " heavy_splits=" << heavy_splits
                         << " groups=" << cfg.heavy_groups(m));
          REQUIRE(cfg.up_down.cluster_size() > 1);
          if (heavy_splits == base.heavy_splits) CHECK(cfg.heavy_groups() > 1);
          CaseResult r = run_sparse_case(*g, L, cfg, x, m);
          INFO(r.describe());
          CHECK(r.ok());
        }
      }
  }
}

TEST_CASE("gpu: a tile where every neuron fires") {
  Gpu* g = need_gpu();
  if (!g) return;
  for (const Shape& s : {kShapes[0], kShapes[4]}) {
    DeviceLayer& base = layer_for(*g, s, 0.005, 99);
    synth::Layer host = base.host;
    synth::force_active(host, 128, 128);  // tile 1 (tile_n 128) fully active
    auto L = upload_layer(*g, std::move(host));
    for (int m : {1, 257}) {
      auto cfg = default_sparse_config({s.d_model, s.d_ff, s.gated}, g->arch, m);
      auto x = synth::make_inputs(m, s.d_model, 4242 + m);
      CaseResult r = run_sparse_case(*g, *L, cfg, x, m);
      INFO("tokens=" << m << " " << r.describe());
      CHECK(r.ok());
      CHECK(r.overflow >= uint32_t(m));  // tile 1 overflows for every token
    }
  }
}

TEST_CASE("gpu: NaN and Inf in the input propagate as in the dense computation") {
  Gpu* g = need_gpu();
  if (!g) return;
  for (const Shape& s : {kShapes[0], kShapes[4]}) {
    DeviceLayer& L = layer_for(*g, s, 0.005);
    for (int m : {3, 257}) {
      auto x = synth::make_inputs(m, s.d_model, 77 + m);
      x[size_t(1) * s.d_model + 5] = float_to_bf16(std::numeric_limits<float>::quiet_NaN());
      x[size_t(m - 1) * s.d_model + 9] = float_to_bf16(std::numeric_limits<float>::infinity());
      auto cfg = default_sparse_config({s.d_model, s.d_ff, s.gated}, g->arch, m);
      CaseResult r = run_sparse_case(*g, L, cfg, x, m, {1, m - 1});
      INFO("tokens=" << m << " " << r.describe());
      CHECK(r.ok());
    }
  }
}

TEST_CASE("gpu: tile shapes, capacities and splits the tuner can pick") {
  Gpu* g = need_gpu();
  if (!g) return;
  const int m = 257;
  DeviceLayer& L = layer_for(*g, kMain, 0.01);
  auto x = synth::make_inputs(m, kMain.d_model, 31337);
  const LayerShape shape{kMain.d_model, kMain.d_ff, true};
  for (int tile_n : {32, 64, 128, 256})
    for (int cap : {1, tile_n / 8 - 1, tile_n})
      for (int bm : {16, 64, 128})
        for (int bk : {32, 64})
          for (int splits : {1, 4}) {
            auto cfg = default_sparse_config(shape, g->arch, m, Sparsity{tile_n, std::max(1, cap)});
            cfg.gate = default_spec(Family::kGatePack, shape, g->arch, {m, m}, cfg.gate.sparsity);
            cfg.up_down = default_spec(Family::kUpDown, shape, g->arch, {m, m}, cfg.gate.sparsity);
            cfg.gate.tile.bm = bm;
            cfg.gate.tile.warps_m = bm >= 32 ? 2 : 1;
            cfg.gate.tile.warps_n = std::min(4, tile_n / 16);
            cfg.gate.tile.bk = bk;
            cfg.gate.tile.stages = bk == 64 ? 3 : 4;
            cfg.up_down.tile.splits = splits;
            if (!cfg.validate()) continue;
            CaseResult r = run_sparse_case(*g, L, cfg, x, m);
            INFO(cfg.gate.kernel_name() << " " << cfg.up_down.kernel_name() << ": " << r.describe());
            CHECK(r.ok());
          }
  // The decode gate at every TwELL format, column block and warp count (several
  // column blocks per CTA column at 257 tokens, d_model split over 1 to 8 warps).
  for (int tile_n : {32, 64, 128, 256})
    for (int cap : {1, tile_n / 8 - 1, tile_n})
      for (int bm : {8, 24, 32})
        for (auto [threads, unroll] : {std::pair{256, 4}, std::pair{512, 8}, std::pair{512, 1}}) {
          const Sparsity sp{tile_n, std::max(1, cap)};
          auto cfg = default_sparse_config(shape, g->arch, m, sp);
          cfg.gate = default_spec(Family::kGateGemv, shape, g->arch, {m, m}, sp);
          cfg.gate.tile.bm = bm, cfg.gate.tile.threads = threads, cfg.gate.tile.stages = unroll;
          if (!cfg.validate()) continue;
          CaseResult r = run_sparse_case(*g, L, cfg, x, m);
          INFO(cfg.describe() << ": " << r.describe());
          CHECK(r.ok());
        }
  // gate_pack split over a cluster of 2-4 CTAs (sm_90a) at every TwELL format, column
  // blocks of 16 to 128 tokens (the last one partial at 257 tokens), rows spread over the
  // cluster's CTAs.
  if (g->arch == Arch::kSm90a)
    for (int tile_n : {32, 64, 128, 256})
      for (int cap : {1, tile_n / 8 - 1})
        for (int bm : {16, 64, 128})
          for (int splits : {2, 3, 4}) {
            const Sparsity sp{tile_n, std::max(1, cap)};
            auto cfg = default_sparse_config(shape, g->arch, m, sp);
            cfg.gate = default_spec(Family::kGatePack, shape, g->arch, {bm, bm}, sp);
            cfg.gate.tile.splits = splits;
            if (!cfg.validate()) continue;
            CaseResult r = run_sparse_case(*g, L, cfg, x, m);
            INFO(cfg.describe() << ": " << r.describe());
            CHECK(r.ok());
          }
  // The GEMM gate's packer and the split up/down at every TwELL format.
  for (int tile_n : {32, 64, 128, 256})
    for (int cap : {1, tile_n / 8 - 1, tile_n}) {
      const Sparsity sp{tile_n, std::max(1, cap)};
      auto cfg = default_sparse_config(shape, g->arch, m, sp);
      cfg.gate = default_spec(Family::kPack, shape, g->arch, {m, m}, sp);
      cfg.up_down = default_spec(Family::kDown, shape, g->arch, {m, m}, sp);
      REQUIRE(cfg.validate());
      CaseResult r = run_sparse_case(*g, L, cfg, x, m);
      INFO(cfg.describe() << ": " << r.describe());
      CHECK(r.ok());
    }
}

TEST_CASE("gpu: every gate and up/down pipeline with overflow at awkward sizes") {
  Gpu* g = need_gpu();
  if (!g) return;
  synth::InputOptions heavy;
  heavy.heavy_fraction = 0.2;
  heavy.heavy_scale = 3.0f;
  for (const Shape& s : {kShapes[0], kShapes[3], kShapes[4]})
    for (int m : {1, 3, 257, 1000})
      for (const auto& cfg : pipelines(s, g->arch, m)) {
        DeviceLayer& L = layer_for(*g, s, 0.005);
        auto x = synth::make_inputs(m, s.d_model, 1234 + m, heavy);
        CaseResult r = run_sparse_case(*g, L, cfg, x, m);
        INFO(s.d_model << "x" << s.d_ff << " tokens=" << m << " " << cfg.describe() << ": " << r.describe());
        CHECK(r.ok());
      }
  // Large: several GEMM-gate chunks (kGateGemmRows) and every pipeline at 8192.
  for (int m : {8192, kGateGemmRows + 3})
    for (const auto& cfg : pipelines(kMain, g->arch, m)) {
      if (m != 8192 && !cfg.gemm_gate()) continue;
      DeviceLayer& L = layer_for(*g, kMain, 0.005);
      auto x = synth::make_inputs(m, kMain.d_model, 99 + m);
      CaseResult r = run_sparse_case(*g, L, cfg, x, m, {0, kGateGemmRows - 1, kGateGemmRows, m - 1});
      INFO("tokens=" << m << " " << cfg.describe() << ": " << r.describe());
      CHECK(r.ok());
    }
}

TEST_CASE("gpu: the cuBLASLt dense baseline matches the reference") {
  Gpu* g = need_gpu();
  if (!g) return;
  for (const Shape& s : {kShapes[0], kShapes[4]})
    for (int m : {1, 257, 2048}) {
      DeviceLayer& L = layer_for(*g, s, 0.005);
      auto x = synth::make_inputs(m, s.d_model, 555 + m);
      CaseResult r = run_dense_case(*g, L, x, m);
      INFO(s.d_model << "x" << s.d_ff << " tokens=" << m << " " << r.describe());
      CHECK(r.ok());
    }
}

// Small and representative, for compute-sanitizer (memcheck, racecheck) in scripts/gpu-check.sh.
TEST_CASE("gpu sanitize: representative kernels", "[sanitize]") {
  Gpu* g = need_gpu();
  if (!g) return;
  synth::InputOptions heavy;
  heavy.heavy_fraction = 0.3;
  heavy.heavy_scale = 3.0f;
  for (const Shape& s : {Shape{512, 1536, true}, Shape{768, 3072, false}})
    for (int m : {1, 3, 257}) {
      check_case(*g, s, 0.01, m, heavy);
      for (const auto& cfg : pipelines(s, g->arch, m)) {
        DeviceLayer& L = layer_for(*g, s, 0.01);
        CaseResult r = run_sparse_case(*g, L, cfg, synth::make_inputs(m, s.d_model, 5 + m, heavy), m);
        INFO(cfg.describe() << ": " << r.describe());
        CHECK(r.ok());
      }
    }
  check_case(*g, Shape{512, 1536, true}, 1.0, 3);
  // Biases and the other activations: the bias loads, the backup path's adds, the final
  // store's down bias, the cuBLASLt bias epilogues (docs/kernels.md).
  for (const Shape& s : {Shape{512, 1536, true}, Shape{768, 3072, false}}) {
    LayerMath math;
    math.activation = s.gated ? Activation::kRelu2 : Activation::kFatRelu;
    math.gate_bias = s.gated, math.up_bias = math.down_bias = true;
    auto L = upload_layer(*g, synth::make_layer(s.d_model, s.d_ff, s.gated, 0.01, 3), math);
    for (int m : {1, 257}) {
      const auto x = synth::make_inputs(m, s.d_model, 9 + m, heavy);
      L->threshold = s.gated ? 0.0f : choose_threshold(*L, x, m);
      for (const auto& cfg : pipelines(s, g->arch, m, {}, &L->shape)) {
        CaseResult r = run_sparse_case(*g, *L, cfg, x, m);
        INFO(cfg.describe() << ": " << r.describe());
        CHECK(r.ok());
      }
      CaseResult r = run_dense_case(*g, *L, x, m);
      INFO("dense: " << r.describe());
      CHECK(r.ok());
    }
  }
}
