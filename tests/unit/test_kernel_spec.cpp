// Unit tests of KernelSpec validation and procedural names.
#include <catch2/catch.hpp>

#include <set>

#include "codegen/kernel_spec.hpp"

using namespace ffnjit;

namespace {
KernelSpec gate(int bm = 128) {
  KernelSpec s = default_spec(Family::kGatePack, {2048, 5632, true}, Arch::kSm90a, {4096, 8192});
  s.tile.bm = bm;
  return s;
}
std::string why(const KernelSpec& s) {
  Status st = s.validate();
  return st ? "" : st.message();
}
}  // namespace

TEST_CASE("default specs validate for every family, arch and bucket") {
  for (Family f : {Family::kGatePack, Family::kGateGemv, Family::kPack, Family::kUpDown, Family::kUp, Family::kDown})
    for (Arch a : {Arch::kSm80, Arch::kSm89, Arch::kSm90a})
      for (int t : {1, 3, 16, 64, 255, 8192})
        for (LayerShape l : {LayerShape{2048, 5632, true}, LayerShape{4096, 14336, true},
                             LayerShape{2048, 1408, true}, LayerShape{512, 1536, true},
                             LayerShape{768, 3072, false}}) {
          KernelSpec s = default_spec(f, l, a, {t, t});
          INFO(s.kernel_name() << ": " << why(s));
          CHECK(s.validate());
        }
}

TEST_CASE("names encode the spec and are unique") {
  KernelSpec s = gate();
  CHECK(s.kernel_name() == "ffnjit_gate_pack_sm90a_bf16_g_k2048n5632_tn128c31_m128k64w2x4s3b2");
  std::set<std::string> names;
  for (int bm : {32, 64, 128})
    for (int cap : {15, 31})
      for (bool gated : {true, false}) {
        KernelSpec t = gate(bm);
        t.sparsity.capacity = cap;
        t.layer.gated = gated;
        names.insert(t.kernel_name());
      }
  CHECK(names.size() == 12);
  KernelSpec u = default_spec(Family::kUpDown, {768, 3072, false}, Arch::kSm80, {1, 1});
  CHECK(u.kernel_name().rfind("ffnjit_up_down_sm80_bf16_ng_k768n3072_tn128c31_t256p", 0) == 0);
}

TEST_CASE("validation names the fix") {
  KernelSpec s = gate();
  s.layer.d_model = 2044;
  CHECK(why(s) == "d_model=2044 is not a positive multiple of 8; pad the weights to a multiple of 8");
  s = gate();
  s.sparsity.tile_n = 96;
  CHECK(why(s) == "tile_n=96 must be 32, 64, 128 or 256");
  s = gate();
  s.sparsity.capacity = 0;
  CHECK(why(s) == "capacity=0 must be in [1, tile_n=128]");
  s = gate();
  s.tile.bk = 48;
  CHECK(why(s) == "bk=48 must be 32 or 64");
  s = gate();
  s.tile.stages = 6;
  s.tile.bk = 64;
  s.tile.bm = 256;
  s.tile.warps_m = 4;
  s.sparsity.tile_n = 256;
  CHECK(why(s).find("bytes of shared memory; sm_90a allows") != std::string::npos);
  s = gate();
  s.tile.threads = 512;
  CHECK(why(s) == "gate_pack ignores threads; leave it at its default");
  // splits: a cluster of CTAs per tile splitting d_model (sm_90a only), named c<splits>.
  s = gate();
  s.tile.splits = 4;
  CHECK(s.validate());
  CHECK(s.cluster_size() == 4);
  CHECK(s.kernel_name().ends_with("s3c4b2"));
  s.tile.splits = 9;
  CHECK(why(s) == "gate_pack splits=9 (CTAs of a cluster per tile) must be in [1, 8]");
  s.tile.splits = 2;
  s.arch = Arch::kSm89;
  s.tile.stages = 2;
  CHECK(why(s) == "gate_pack splits=2 needs thread-block clusters (sm_90a); use splits=1 on sm_89");
  s = gate();
  s.bucket = {10, 5};
  CHECK(why(s) == "batch bucket [10, 5] is empty or starts below 1 token");
  KernelSpec u = default_spec(Family::kUpDown, {2048, 5632, true}, Arch::kSm90a, {1, 1});
  u.tile.splits = 1000;
  CHECK(why(u) == "splits=1000 must be in [1, n_tiles=44]");
}

TEST_CASE("gate_gemv specs: name, defaults and the fixes its validation names") {
  KernelSpec s = default_spec(Family::kGateGemv, {2048, 5632, true}, Arch::kSm90a, {1, 1});
  CHECK(s.kernel_name() == "ffnjit_gate_gemv_sm90a_bf16_g_k2048n5632_tn128c31_m8t512u4");
  CHECK(default_spec(Family::kGateGemv, {2048, 5632, true}, Arch::kSm90a, {9, 16}).tile.bm == 16);
  // K-slice partials [threads / 32 / (tile_n / 16)][bm][tile_n] fp32 + the bf16 tile.
  CHECK(s.dynamic_smem_bytes() == 2 * 8 * 128 * 4 + 8 * 136 * 2);
  s.sparsity.tile_n = 256;
  s.tile.threads = 256;
  CHECK(why(s) == "gate_gemv threads=256 must be a multiple of 32 * tile_n / 16 = 512 (one warp per 16 neurons and "
                  "K slice); use more threads");
  s = default_spec(Family::kGateGemv, {2048, 5632, true}, Arch::kSm90a, {1, 1});
  s.tile.bm = 12;
  CHECK(why(s) == "gate_gemv bm=12 must be a multiple of 8 up to 64");
  s.tile.bm = 8;
  s.tile.stages = 3;
  CHECK(why(s) == "gate_gemv stages=3 (loads in flight per warp) must be 1, 2, 4 or 8");
  s.tile.stages = 4;
  s.tile.splits = 2;
  CHECK(why(s) == "gate_gemv ignores bk/warps/splits; leave them at their defaults");
}

TEST_CASE("a fused up_down's splits form a cluster when one fits (sm_90a, up to 8)") {
  KernelSpec u = default_spec(Family::kUpDown, {2048, 5632, true}, Arch::kSm90a, {1, 1});
  REQUIRE(u.tile.splits == 8);
  CHECK(u.cluster_size() == 8);
  const int smem = u.dynamic_smem_bytes();
  u.tile.splits = 16;  // beyond a portable cluster: global tickets, no partial in shared memory
  CHECK(u.cluster_size() == 1);
  u.tile.splits = 1;
  CHECK(u.cluster_size() == 1);
  u.tile.splits = 8;
  u.arch = Arch::kSm80;
  CHECK(u.cluster_size() == 1);
  // Every up_down holds an fp32 [d_model] region: the accumulators while an overflowed
  // tile's up dots run, then (a cluster) the split's partial; up holds none.
  CHECK(u.dynamic_smem_bytes() == smem);
  KernelSpec up = u;
  up.family = Family::kUp;
  CHECK(up.dynamic_smem_bytes() == smem - 2048 * 4);
  KernelSpec d = default_spec(Family::kDown, {2048, 5632, true}, Arch::kSm90a, {1, 1});
  d.tile.splits = 4;
  CHECK(d.cluster_size() == 1);
}

TEST_CASE("canonical form ignores the bucket but not the code-shaping fields") {
  KernelSpec a = gate(), b = gate();
  b.bucket = {1, 1};
  CHECK(a.canonical() == b.canonical());
  b.tile.stages = 4;
  CHECK(a.canonical() != b.canonical());
}

TEST_CASE("arch parsing accepts common spellings and explains sm_90") {
  CHECK(*parse_arch("sm_90a") == Arch::kSm90a);
  CHECK(*parse_arch("sm80") == Arch::kSm80);
  CHECK(*parse_arch("89") == Arch::kSm89);
  CHECK(parse_arch("sm_90").error().message.find("use sm_90a") != std::string::npos);
  CHECK(parse_arch("sm_70").error().message == "unsupported arch 'sm_70'; use sm_80, sm_89 or sm_90a");
}

namespace {
LayerShape math(bool gated, Activation act, bool gb, bool ub, bool db) {
  LayerShape l{2048, 5632, gated, DType::kBF16};
  l.activation = act, l.gate_bias = gb, l.up_bias = ub, l.down_bias = db;
  return l;
}
}  // namespace

TEST_CASE("activation and biases: names, canonical text and what each family reads") {
  const Arch a = Arch::kSm90a;
  const LayerShape all = math(true, Activation::kRelu2, true, true, true);
  CHECK(default_spec(Family::kGatePack, all, a, {2048, 2048}).kernel_name() ==
        "ffnjit_gate_pack_sm90a_bf16_g_relu2_bg_k2048n5632_tn128c31_m128k64w2x4s3b2");
  CHECK(default_spec(Family::kUpDown, all, a, {1, 1}).kernel_name() ==
        "ffnjit_up_down_sm90a_bf16_g_relu2_bgud_k2048n5632_tn128c31_t256p8b4");
  CHECK(default_spec(Family::kUp, all, a, {8192, 8192}).kernel_name() ==
        "ffnjit_up_sm90a_bf16_g_bu_k2048n5632_tn128c31_t128p2b8");  // up: only Wu's bias
  CHECK(default_spec(Family::kPack, all, a, {1, 1}).kernel_name() ==
        "ffnjit_pack_sm90a_bf16_relu2_n5632_tn128c31_t128");  // the GEMM adds the bias
  CHECK(default_spec(Family::kDenseAct, all, a, {1, 1}).kernel_name() ==
        "ffnjit_dense_act_sm90a_bf16_g_relu2_n5632_t256");
  CHECK(default_spec(Family::kUpDown, all, a, {1, 1}).canonical().ends_with(";act=relu2;bias=gud"));
  // A non-gated layer's gate projection is Wu: its bias is the gate kernels' "g".
  const LayerShape opt = math(false, Activation::kRelu, false, true, true);
  CHECK(default_spec(Family::kGateGemv, opt, a, {1, 1}).kernel_name() ==
        "ffnjit_gate_gemv_sm90a_bf16_ng_bg_k2048n5632_tn128c31_m8t512u4");
  CHECK(default_spec(Family::kDown, opt, a, {1, 1})
            .kernel_name()
            .rfind("ffnjit_down_sm90a_bf16_ng_bgd_", 0) == 0);
  // What a family does not read leaves its code, name and key alone: the same kernel.
  const LayerShape plain{2048, 5632, true};
  for (Family f : {Family::kPack, Family::kStats, Family::kTranspose}) {
    LayerShape biased = plain;
    biased.gate_bias = biased.up_bias = biased.down_bias = true;
    CHECK(default_spec(f, biased, a, {1, 1}).canonical() ==
          default_spec(f, plain, a, {1, 1}).canonical());
    CHECK(default_spec(f, biased, a, {1, 1}).kernel_name() ==
          default_spec(f, plain, a, {1, 1}).kernel_name());
  }
  LayerShape only_down = plain;
  only_down.down_bias = true;
  CHECK(default_spec(Family::kGatePack, only_down, a, {1, 1}).canonical() ==
        default_spec(Family::kGatePack, plain, a, {1, 1}).canonical());
  CHECK(default_spec(Family::kUpDown, only_down, a, {1, 1}).canonical() !=
        default_spec(Family::kUpDown, plain, a, {1, 1}).canonical());
  // Every relevant combination gets its own name.
  std::set<std::string> names;
  for (Activation act : {Activation::kRelu, Activation::kRelu2, Activation::kFatRelu})
    for (int bits = 0; bits < 8; ++bits)
      names.insert(
          default_spec(Family::kUpDown, math(true, act, bits & 1, bits & 2, bits & 4), a, {1, 1})
              .kernel_name());
  CHECK(names.size() == 24);
  // Bias-free ReLU names and keys are what they were before activations existed.
  CHECK(default_spec(Family::kUpDown, plain, a, {1, 1}).kernel_name() ==
        "ffnjit_up_down_sm90a_bf16_g_k2048n5632_tn128c31_t256p8b4");
  CHECK(default_spec(Family::kUpDown, plain, a, {1, 1}).canonical().find("act=") ==
        std::string::npos);
}

TEST_CASE("activation parsing and bias validation name the fix") {
  CHECK(*parse_activation("relu2") == Activation::kRelu2);
  CHECK(*parse_activation("fatrelu") == Activation::kFatRelu);
  CHECK(parse_activation("gelu").error().message ==
        "unknown activation 'gelu'; use relu, relu2 or fatrelu");
  KernelSpec s = default_spec(Family::kUpDown, math(false, Activation::kRelu, true, false, false),
                              Arch::kSm90a, {1, 1});
  CHECK(why(s) ==
        "gate_bias is set on a non-gated layer; its first projection is up_proj/fc1: set up_bias");
  for (Family f : {Family::kGatePack, Family::kGateGemv, Family::kPack, Family::kUpDown,
                   Family::kUp, Family::kDown, Family::kDenseAct})
    for (Activation act : {Activation::kRelu2, Activation::kFatRelu})
      for (bool gated : {true, false}) {
        KernelSpec k = default_spec(f, math(gated, act, gated, true, true), Arch::kSm80, {3, 3});
        INFO(k.kernel_name() << ": " << why(k));
        CHECK(k.validate());
      }
}
