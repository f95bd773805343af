// gpu tier: the device-side dense switch and the heavy-token split, served through
// runtime::Layer as the C API serves them. Under a CUDA graph, a chunk whose active
// pairs exceed switch_active x tokens runs the dense up/down behind a conditional node
// (the gate's counts decide); either branch must match the fp64 reference, with
// poisoned outputs, at token counts around the bucket and chunk edges (65, 257, 8195 =
// two chunks), gated and non-gated, with biases and relu2. The heavy split (heavy
// tokens handed to a split second pass) is checked with a few and with more heavy tokens
// than its slots.
#include <catch2/catch.hpp>

#include <cstdio>

#include "runtime/layer.hpp"
#include "support/bf16.hpp"
#include "tests/gpu/gpu_harness.hpp"

using namespace ffnjit;
using namespace ffnjit::test;

namespace {

// The harness layer as a runtime::Layer (the same weights and biases).
std::unique_ptr<Layer> make_layer(Gpu& g, const DeviceLayer& L) {
  auto f = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
  HostFfnWeights host{L.host.gated ? L.host.wg.data() : nullptr, L.host.wu.data(), L.host.wd.data(), L.shape,
                      f(L.gate_bias), f(L.up_bias), f(L.down_bias), 0.0f};
  LayerOptions lo;
  lo.shape = L.shape;
  auto layer = Layer::create(g.kernels, g.arch, host, lo, g.stream);
  REQUIRE(layer);
  return std::move(*layer);
}

struct Run {
  std::vector<uint16_t> out;
  bool dense_branch = false;  // the dense switch's up buffer was written
};

// Captures plan's forward into a CUDA graph (as an engine's capture or the runtime's
// replay does), replays it over poisoned output and workspace, and reads the result.
Run run_graph(Gpu& g, Layer& layer, const ServedPlan& plan, const std::vector<uint16_t>& x, int tokens) {
  const drv::Api* cu = g.device->api();
  const size_t dm = size_t(layer.shape().d_model);
  auto xb = *DeviceBuffer::alloc(x.size() * 2), ob = *DeviceBuffer::alloc(x.size() * 2);
  REQUIRE(xb.upload(x.data(), x.size() * 2));
  auto ws = *DeviceBuffer::alloc(layer.workspace_bytes(plan, tokens));
  REQUIRE(ob.fill_bytes(0x7f));
  REQUIRE(ws.fill_bytes(0x7f));
  CUgraph graph = nullptr;
  CUgraphExec exec = nullptr;
  REQUIRE(cu->cuStreamBeginCapture(g.stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL) == CUDA_SUCCESS);
  const Status s = layer.enqueue(plan, xb.ptr(), ob.ptr(), tokens, ws.ptr(), g.stream);
  REQUIRE(cu->cuStreamEndCapture(g.stream, &graph) == CUDA_SUCCESS);
  INFO((s ? std::string() : s.message()));
  REQUIRE(s);
  REQUIRE(cu->cuGraphInstantiate(&exec, graph, 0) == CUDA_SUCCESS);
  REQUIRE(cu->cuGraphLaunch(exec, g.stream) == CUDA_SUCCESS);
  REQUIRE(cu->cuStreamSynchronize(g.stream) == CUDA_SUCCESS);
  Run r;
  r.out.resize(size_t(tokens) * dm);
  REQUIRE(ob.download(r.out.data(), r.out.size() * 2));
  if (layer.shape().gated && plan.choice.strategy == Choice::Strategy::kSparse) {
    uint32_t word = 0;
    REQUIRE(ws.download(&word, 4, dense_switch_up_offset(plan.choice.sparse, tokens)));
    r.dense_branch = word != 0x7f7f7f7fu;
  }
  cu->cuGraphExecDestroy(exec);
  cu->cuGraphDestroy(graph);
  return r;
}

int unwritten(const std::vector<uint16_t>& out) {
  int n = 0;
  for (uint16_t v : out) n += v == 0x7f7f;
  return n;
}

}  // namespace

namespace {

void switch_cases(const std::vector<int>& token_counts) {
  Gpu* g = need_gpu();
  if (!g) return;
  struct Case {
    int d_model, d_ff;
    bool gated;
    LayerMath math;
  };
  const Case cases[] = {{2048, 5632, true, {}},
                        {1024, 2816, true, {Activation::kRelu, true, true, true}},
                        {768, 3072, false, {Activation::kRelu2, false, true, true}}};
  for (const Case& c : cases) {
    auto L = upload_layer(*g, synth::make_layer(c.d_model, c.d_ff, c.gated, 29.0 / c.d_ff, 5), c.math);
    auto layer = make_layer(*g, *L);
    for (int tokens : token_counts) {
      const BatchBucket b = default_buckets()[size_t(bucket_index(default_buckets(), tokens))];
      Choice choice{Choice::Strategy::kSparse, default_sparse_config(L->shape, g->arch, b)};
      REQUIRE(choice.sparse.gemm_gate());
      const auto x = synth::make_inputs(tokens, c.d_model, 31 * tokens + c.d_ff);
      for (int limit : {1, c.d_ff}) {  // 1 active per token: always dense; d_ff: never
        choice.sparse.switch_active = limit;
        auto plan = layer->make_plan(choice);
        REQUIRE(plan);
        REQUIRE((*plan)->switch_act);
        const Run r = run_graph(*g, *layer, **plan, x, tokens);
        const double e = relative_error(L->reference(), x, r.out, tokens, {0, tokens - 1});
        INFO(c.d_model << "x" << c.d_ff << (c.gated ? " gated" : " non-gated") << " tokens=" << tokens
                       << " switch_active=" << limit << " rel=" << e);
        CHECK(unwritten(r.out) == 0);
        CHECK(e <= 1e-2);
        if (c.gated) CHECK(r.dense_branch == (limit == 1));
      }
    }
  }
}

void heavy_cases(const std::vector<int>& token_counts) {
  Gpu* g = need_gpu();
  if (!g) return;
  if (g->arch != Arch::kSm90a) {
    std::printf("[SKIP] the heavy split runs on sm_90a only (this GPU is %s)\n", arch_name(g->arch));
    return;
  }
  auto L = upload_layer(*g, synth::make_layer(2048, 5632, true, 29.0 / 5632, 9), {Activation::kRelu, true, true, true});
  for (int tokens : token_counts) {
    for (double heavy_fraction : {0.01, 0.5}) {  // ~3-20 heavy tokens; more than the 64 slots
      synth::InputOptions in;
      in.heavy_fraction = heavy_fraction, in.heavy_scale = 3.0f;
      const auto x = synth::make_inputs(tokens, 2048, 7 * tokens + int(heavy_fraction * 100), in);
      for (int splits : {0, 8}) {
        auto cfg = default_sparse_config(L->shape, g->arch, tokens);
        cfg.heavy_splits = splits;
        cfg.switch_active = 0;
        INFO("tokens=" << tokens << " heavy=" << heavy_fraction << " heavy_splits=" << splits);
        REQUIRE(cfg.heavy_split() == (splits > 1));
        CaseResult r = run_sparse_case(*g, *L, cfg, x, tokens);
        INFO(r.describe());
        CHECK(r.ok());
      }
    }
  }
}

}  // namespace

TEST_CASE("gpu: the dense switch serves either branch exactly, and fires only when the batch is dense") {
  switch_cases({65, 257, 8195});
}

TEST_CASE("gpu: heavy tokens split over a second pass, with few of them and with more than its slots") {
  heavy_cases({257, 2048});
}

// What scripts/gpu-check.sh runs under compute-sanitizer (memcheck, racecheck).
TEST_CASE("gpu: dense switch and heavy split, small sizes", "[sanitize]") {
  switch_cases({65, 257});
  heavy_cases({257});
}
