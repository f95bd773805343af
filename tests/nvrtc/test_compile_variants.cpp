// nvrtc tier: every template and variant compiles for each arch it supports, with no
// local-memory spills. Needs NVRTC only (no GPU).
#include <catch2/catch.hpp>

#include <vector>

#include "codegen/compile.hpp"
#include "codegen/source.hpp"

using namespace ffnjit;

namespace {

// Representative variants: the default of every family for the shapes and
// buckets, plus the tile shapes the tuner searches over.
std::vector<KernelSpec> variants(Arch arch) {
  std::vector<KernelSpec> out;
  const LayerShape shapes[] = {{2048, 5632, true}, {4096, 14336, true}, {2048, 1408, true},
                               {512, 1536, true}, {768, 3072, false}};
  for (const auto& l : shapes)
    for (int tokens : {1, 8192}) {
      out.push_back(default_spec(Family::kGatePack, l, arch, {tokens, tokens}));
      out.push_back(default_spec(Family::kUpDown, l, arch, {tokens, tokens}));
    }
  // The GEMM gate's packer, up, and down (column splits 1, 2, 4) on every shape; the
  // fused up_down split over tiles (the in-kernel reduction).
  for (const auto& l : shapes)
    for (Family f : {Family::kPack, Family::kUp, Family::kDown}) out.push_back(default_spec(f, l, arch, {8192, 8192}));
  for (int splits : {1, 4}) {
    KernelSpec d = default_spec(Family::kDown, shapes[0], arch, {8192, 8192});
    d.tile.splits = splits;
    out.push_back(d);
  }
  KernelSpec r = default_spec(Family::kUpDown, shapes[0], arch, {64, 64});
  r.tile.splits = 4;
  out.push_back(r);
  for (int tile_n : {32, 64, 256}) out.push_back(default_spec(Family::kPack, shapes[0], arch, {8192, 8192}, {tile_n, tile_n / 4 - 1}));
  // The decode gate on every shape and at every TwELL width, with its tuner variants.
  for (const auto& l : shapes)
    for (int tokens : {1, 16, 32}) out.push_back(default_spec(Family::kGateGemv, l, arch, {tokens, tokens}));
  for (int tile_n : {32, 64, 128, 256})
    for (int threads : {256, 512})
      for (int unroll : {4, 8}) {
        KernelSpec g = default_spec(Family::kGateGemv, shapes[0], arch, {32, 32}, {tile_n, tile_n / 4 - 1});
        g.tile.threads = threads, g.tile.stages = unroll;
        if (g.validate()) out.push_back(g);
      }
  // The helpers: weight transpose, dense activation (both gatings), serving counters.
  out.push_back(default_spec(Family::kTranspose, shapes[0], arch, {1, 1}));
  out.push_back(default_spec(Family::kDenseAct, shapes[0], arch, {1, 1}));
  out.push_back(default_spec(Family::kDenseAct, shapes[4], arch, {1, 1}));
  KernelSpec st = default_spec(Family::kStats, shapes[0], arch, {1, 1});
  st.tile.threads = 128;
  out.push_back(st);
  // The gate split over a thread-block cluster (sm_90a only: validate drops the rest).
  for (int tile_n : {64, 128})
    for (int bm : {16, 64, 128})
      for (int splits : {2, 4, 8}) {
        KernelSpec g = default_spec(Family::kGatePack, shapes[0], arch, {bm, bm}, {tile_n, tile_n / 4 - 1});
        g.tile.splits = splits;
        if (g.validate()) out.push_back(g);
      }
  // Biases and the other activations: every family that reads them, on a gated layer
  // with all three biases (relu2) and a non-gated biased one (fatrelu, OPT-like), at
  // decode (splits, a cluster) and prefill; the in-register bias adds must not spill.
  LayerShape llama_b = shapes[0], opt_b = shapes[4];
  llama_b.activation = Activation::kRelu2,
  llama_b.gate_bias = llama_b.up_bias = llama_b.down_bias = true;
  opt_b.activation = Activation::kFatRelu, opt_b.up_bias = opt_b.down_bias = true;
  for (const LayerShape& l : {llama_b, opt_b}) {
    for (int tokens : {1, 8192})
      for (Family f :
           {Family::kGatePack, Family::kUpDown, Family::kPack, Family::kUp, Family::kDown})
        out.push_back(default_spec(f, l, arch, {tokens, tokens}));
    for (int tokens : {1, 32})
      out.push_back(default_spec(Family::kGateGemv, l, arch, {tokens, tokens}));
    out.push_back(default_spec(Family::kDenseAct, l, arch, {1, 1}));
    KernelSpec u = default_spec(Family::kUpDown, l, arch, {64, 64});
    u.tile.splits = 16;  // global tickets
    out.push_back(u);
    KernelSpec g = default_spec(Family::kGatePack, l, arch, {16, 16});
    g.tile.splits = 4;  // cluster split (sm_90a)
    if (g.validate()) out.push_back(g);
  }
  // Tile variants on the 1.5B shape.
  for (int tile_n : {64, 128, 256})
    for (int bk : {32, 64}) {
      KernelSpec g = default_spec(Family::kGatePack, shapes[0], arch, {8192, 8192}, {tile_n, tile_n / 4 - 1});
      g.tile.bk = bk;
      g.tile.stages = arch == Arch::kSm89 ? 2 : (bk == 64 ? 3 : 4);
      if (g.validate()) out.push_back(g);
    }
  return out;
}

}  // namespace

TEST_CASE("every variant compiles for sm_80, sm_89 and sm_90a without spills") {
  for (Arch arch : {Arch::kSm80, Arch::kSm89, Arch::kSm90a}) {
    for (const KernelSpec& spec : variants(arch)) {
      INFO(spec.kernel_name());
      REQUIRE(spec.validate());
      auto src = generate_source(spec);
      REQUIRE(src);
      auto k = compile(*src);
      if (!k) FAIL(k.error().message);
      CHECK(k->cubin.size() > 1000);
      CHECK(k->resources.registers > 0);
      CHECK(k->resources.registers <= 255);
      CHECK_FALSE(k->resources.spills());
    }
  }
}

TEST_CASE("a compile error comes back as a value with the log and options") {
  KernelSpec spec = default_spec(Family::kPack, {512, 1536, true}, Arch::kSm80, {1, 1});
  auto src = generate_source(spec);
  REQUIRE(src);
  src->text += "\nthis is not CUDA;\n";
  auto k = compile(*src);
  REQUIRE_FALSE(k);
  CHECK(k.error().kind == ErrorKind::kCompile);
  CHECK(k.error().message.find("options: -arch=sm_80") != std::string::npos);
  CHECK(k.error().message.find("error") != std::string::npos);
}

TEST_CASE("PTX is produced on request and the key depends on the arch") {
  KernelSpec spec = default_spec(Family::kPack, {512, 1536, true}, Arch::kSm90a, {1, 1});
  auto src = generate_source(spec);
  REQUIRE(src);
  CompileOptions opts;
  opts.want_ptx = true;
  auto k = compile(*src, opts);
  REQUIRE(k);
  CHECK(k->ptx.find(".target sm_90a") != std::string::npos);
  CHECK(k->ptx.find(spec.kernel_name()) != std::string::npos);
  spec.arch = Arch::kSm80;
  auto k80 = compile(*generate_source(spec));
  REQUIRE(k80);
  CHECK(k80->key != k->key);
}
