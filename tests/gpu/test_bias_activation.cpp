// gpu tier: FFN biases and the ReLU-family activations (relu, relu2, fatrelu) in every
// gate family, every up/down family and the dense fallback, against the fp64 reference,
// with poisoned outputs, tiles over capacity and awkward shapes and token counts.
#include <catch2/catch.hpp>

#include <cstdio>
#include <map>

#include "support/bf16.hpp"
#include "tests/gpu/gpu_harness.hpp"

using namespace ffnjit;
using namespace ffnjit::test;

namespace {

struct Shape {
  int d_model, d_ff;
  bool gated;
};
// Neither dimension a multiple of the tiles: d_model 528 is not a multiple of 64 (bk),
// d_ff 1400 and 1000 are multiples of none of 32..256 (partial last TwELL tile).
const Shape kGated{528, 1400, true}, kNonGated{336, 1000, false}, kMain{2048, 5632, true};

const Activation kActs[] = {Activation::kRelu, Activation::kRelu2, Activation::kFatRelu};

// The three bias sets of the issue: none, all the layer has, only the output's.
enum class Biases { kNone, kAll, kDownOnly };
LayerMath math_of(Activation act, Biases b, bool gated) {
  LayerMath m;
  m.activation = act;
  m.gate_bias = b == Biases::kAll && gated;
  m.up_bias = b == Biases::kAll;
  m.down_bias = b != Biases::kNone;
  return m;
}
const char* biases_name(Biases b) {
  return b == Biases::kNone ? "none" : b == Biases::kAll ? "all" : "down";
}

std::string describe_math(const LayerShape& l) {
  return std::string(activation_name(l.activation)) + " bias=" + (l.gate_bias ? "g" : "") +
         (l.up_bias ? "u" : "") + (l.down_bias ? "d" : "");
}

// Small TwELL capacities so heavy tokens overflow their tiles: the backup path (z, bias,
// activation, up bias recomputed from the weights) runs in every family. The non-gated
// shape uses 64-wide tiles, so that it has more than 8 of them (a fused up_down split over
// all tiles then sums through global tickets, not a cluster).
Sparsity small_cap(bool gated) {
  return gated ? Sparsity{128, 7} : Sparsity{64, 5};
}

// Heavy-tailed tokens: a fifth of them has 3x the features, so several times the neurons.
synth::InputOptions heavy() {
  synth::InputOptions o;
  o.heavy_fraction = 0.2;
  o.heavy_scale = 3.0f;
  return o;
}

// A layer per (shape, math), built once: the sweep revisits each many times.
DeviceLayer& layer_for(Gpu& g, const Shape& s, const LayerMath& m, double fraction = 0.01) {
  static std::map<std::string, std::unique_ptr<DeviceLayer>> layers;
  const std::string key = std::to_string(s.d_model) + "x" + std::to_string(s.d_ff) +
                          (s.gated ? "g" : "n") + activation_name(m.activation) +
                          (m.gate_bias ? "G" : "") + (m.up_bias ? "U" : "") +
                          (m.down_bias ? "D" : "") + "@" + std::to_string(fraction);
  auto& slot = layers[key];
  if (!slot) slot = upload_layer(g, synth::make_layer(s.d_model, s.d_ff, s.gated, fraction, 17), m);
  return *slot;
}

// The 16 pipelines: gate {gate_gemv, gate_pack, gate_pack split over a 4-CTA cluster
// (sm_90a; else gate_pack bm 16), cuBLASLt GEMM + pack} x up/down {fused 1 split, fused 4
// splits (a cluster on sm_90a), fused over every tile (> 8: global tickets), up + down
// with 2 column splits}.
SparseFfnConfig pipeline(int index, const LayerShape& shape, Arch arch, int tokens) {
  const BatchBucket b{tokens, tokens};
  const Sparsity sp = small_cap(shape.gated);
  SparseFfnConfig c = default_sparse_config(shape, arch, b, sp);
  const int gate = index / 4, ud = index % 4;
  const Family gf = gate == 0 ? Family::kGateGemv : gate == 3 ? Family::kPack : Family::kGatePack;
  c.gate = default_spec(gf, shape, arch, gate == 2 ? BatchBucket{16, 16} : b, sp);
  if (gate == 2 && arch == Arch::kSm90a) c.gate.tile.splits = 4;
  const Family uf = ud == 3 ? Family::kDown : Family::kUpDown;
  c.up_down = default_spec(uf, shape, arch, b, sp);
  c.up_down.tile.splits = ud == 0 ? 1 : ud == 1 ? 4 : ud == 2 ? c.up_down.n_tiles() : 2;
  return c;
}
const char* kUpDownNames[] = {"up_down p1", "up_down p4", "up_down all tiles", "up + down p2"};

struct Case {
  Shape shape;
  LayerMath math;
  int tokens;
  std::vector<int> pipelines;
};

}  // namespace

TEST_CASE("gpu bias: every gate and up/down family with each activation and bias set") {
  Gpu* g = need_gpu();
  if (!g) return;
  // Sampled product: for each shape (gated, non-gated), token count and (activation,
  // biases) pair, 4 of the 16 pipelines, rotated so that across the 4 token counts every
  // pipeline meets every (activation, biases) pair exactly once per shape.
  const int token_counts[] = {1, 3, 255, 257};
  std::vector<Case> cases;
  for (const Shape& s : {kGated, kNonGated})
    for (int ti = 0; ti < 4; ++ti)
      for (int c = 0; c < 9; ++c) {
        Case k{s, math_of(kActs[c / 3], Biases(c % 3), s.gated), token_counts[ti], {}};
        for (int slot = 0; slot < 4; ++slot) k.pipelines.push_back((4 * c + slot + 4 * ti) % 16);
        cases.push_back(k);
      }
  // Compile every kernel of the sweep on all host cores first.
  std::vector<KernelSpec> specs;
  for (const Case& k : cases) {
    const LayerShape shape = layer_for(*g, k.shape, k.math).shape;
    for (int p : k.pipelines)
      for (const KernelSpec& s : pipeline(p, shape, g->arch, k.tokens).kernel_specs())
        specs.push_back(s);
  }
  precompile(*g, specs);

  std::map<std::string, uint64_t> overflow;  // per shape and up/down family
  for (const Case& k : cases) {
    DeviceLayer& L = layer_for(*g, k.shape, k.math);
    const auto x =
        synth::make_inputs(k.tokens, k.shape.d_model, 1000 + k.tokens * 31 + k.shape.d_ff, heavy());
    L.threshold =
        k.math.activation == Activation::kFatRelu ? choose_threshold(L, x, k.tokens) : 0.0f;
    for (int p : k.pipelines) {
      const SparseFfnConfig cfg = pipeline(p, L.shape, g->arch, k.tokens);
      REQUIRE(cfg.validate());
      CaseResult r = run_sparse_case(*g, L, cfg, x, k.tokens);
      INFO(k.shape.d_model << "x" << k.shape.d_ff << (k.shape.gated ? " gated " : " non-gated ")
                           << describe_math(L.shape) << " threshold=" << L.threshold << " tokens="
                           << k.tokens << " " << cfg.describe() << ": " << r.describe());
      CHECK(r.ok());
      overflow[std::to_string(k.shape.d_ff) + " " + kUpDownNames[p % 4]] += r.overflow;
    }
  }
  // Heavy tokens overflowed in every up/down family: their backup path ran with biases.
  for (const Shape& s : {kGated, kNonGated})
    for (const char* ud : kUpDownNames) {
      INFO(s.d_ff << " " << ud);
      CHECK(overflow[std::to_string(s.d_ff) + " " + ud] > 0);
    }
}

TEST_CASE("gpu bias: the dense fallback with each activation and bias set") {
  Gpu* g = need_gpu();
  if (!g) return;
  for (const Shape& s : {kGated, kNonGated, kMain})
    for (Activation act : kActs)
      for (Biases b : {Biases::kNone, Biases::kAll, Biases::kDownOnly})
        for (int m : {1, 257}) {
          const bool big = s.d_model == kMain.d_model;
          if (big && (b != Biases::kAll || m == 1)) continue;  // the big shape: a sample
          DeviceLayer& L = layer_for(*g, s, math_of(act, b, s.gated), big ? 0.005 : 0.01);
          const auto x = synth::make_inputs(m, s.d_model, 77 + m, heavy());
          L.threshold = act == Activation::kFatRelu ? choose_threshold(L, x, m) : 0.0f;
          CaseResult r = run_dense_case(*g, L, x, m);
          INFO(s.d_model << "x" << s.d_ff << " " << describe_math(L.shape) << " biases="
                         << biases_name(b) << " tokens=" << m << ": " << r.describe());
          CHECK(r.ok());
        }
}

TEST_CASE("gpu bias: a dropped bias would be caught (sparse and dense)") {
  Gpu* g = need_gpu();
  if (!g) return;
  // The comparison is sensitive to every bias: the outputs that match the layer's
  // reference are far from the reference of the same layer without any one of them.
  for (const Shape& s : {kGated, kNonGated})
    for (Activation act : {Activation::kRelu, Activation::kFatRelu}) {
      DeviceLayer& L = layer_for(*g, s, math_of(act, Biases::kAll, s.gated));
      const int m = 257;
      // Ordinary tokens: the down bias is scaled to their output (heavy ones dwarf it).
      const auto x = synth::make_inputs(m, s.d_model, 4242);
      L.threshold = act == Activation::kFatRelu ? choose_threshold(L, x, m) : 0.0f;
      std::vector<uint16_t> sparse_out, dense_out;
      const SparseFfnConfig cfg = default_sparse_config(L.shape, g->arch, m, small_cap(s.gated));
      CaseResult rs = run_sparse_case(*g, L, cfg, x, m, {}, &sparse_out);
      CaseResult rd = run_dense_case(*g, L, x, m, &dense_out);
      INFO(s.d_ff << " " << describe_math(L.shape) << " sparse: " << rs.describe()
                  << " dense: " << rd.describe());
      REQUIRE(rs.ok());
      REQUIRE(rd.ok());
      for (int drop = 0; drop < 3; ++drop) {
        ref::FfnWeights w = L.reference();
        const float*& bias = drop == 0 ? w.gate_bias : drop == 1 ? w.up_bias : w.down_bias;
        if (!bias) continue;  // a non-gated layer has no gate_proj bias
        bias = nullptr;
        INFO("without bias " << drop);
        CHECK(relative_error(w, x, sparse_out, m) > 0.05);
        CHECK(relative_error(w, x, dense_out, m) > 0.05);
      }
    }
}

TEST_CASE("gpu bias: the SparseLM shape with biases at decode, prefill and several GEMM chunks") {
  Gpu* g = need_gpu();
  if (!g) return;
  for (Activation act : kActs) {
    DeviceLayer& L = layer_for(*g, kMain, math_of(act, Biases::kAll, true), 0.005);
    for (int m : {1, 16, 257, 2048, kGateGemmRows + 3}) {
      if (m > 2048 && act != Activation::kRelu2) continue;  // the second GEMM chunk: once
      const std::vector<int> must = {0, kGateGemmRows - 1, kGateGemmRows, m - 1};
      const auto x = synth::make_inputs(m, kMain.d_model, 99 + m, heavy());
      L.threshold = act == Activation::kFatRelu ? choose_threshold(L, x, m, must) : 0.0f;
      const SparseFfnConfig cfg = default_sparse_config(L.shape, g->arch, m);
      CaseResult r = run_sparse_case(*g, L, cfg, x, m, must);
      INFO(describe_math(L.shape) << " tokens=" << m << " " << cfg.describe() << ": "
                                  << r.describe());
      CHECK(r.ok());
    }
  }
}

TEST_CASE("gpu bias: fatrelu keeps neurons under the threshold exactly out") {
  Gpu* g = need_gpu();
  if (!g) return;
  // A threshold above every pre-activation: no neuron is active, so the output is
  // exactly the down bias (rounded to bf16) in every pipeline, overflow or not.
  DeviceLayer& L = layer_for(*g, kGated, math_of(Activation::kFatRelu, Biases::kAll, true));
  L.threshold = 1e4f;
  for (int m : {3, 257}) {
    const auto x = synth::make_inputs(m, kGated.d_model, 5 + m, heavy());
    for (int p : {0, 5, 10, 15}) {
      const SparseFfnConfig cfg = pipeline(p, L.shape, g->arch, m);
      std::vector<uint16_t> out;
      CaseResult r = run_sparse_case(*g, L, cfg, x, m, {}, &out);
      INFO("tokens=" << m << " " << cfg.describe() << ": " << r.describe());
      CHECK(r.ok());
      CHECK(r.overflow == 0);
      int differ = 0;
      for (int t = 0; t < m; ++t)
        for (int d = 0; d < kGated.d_model; ++d)
          differ += out[size_t(t) * kGated.d_model + d] != float_to_bf16(L.down_bias[d]);
      CHECK(differ == 0);
    }
  }
}
