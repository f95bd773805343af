// Developer benchmark: times the gate and up/down kernels separately for several
// tile configurations, to see where a sparse forward spends its time. Not a test.
// usage: bench_kernels [tokens] [k]
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "codegen/compile.hpp"
#include "model/synthetic.hpp"
#include "runtime/device_weights.hpp"
#include "tuner/measure.hpp"

using namespace ffnjit;

namespace {

void die(const std::string& m) {
  std::fprintf(stderr, "bench_kernels: %s\n", m.c_str());
  std::exit(1);
}
template <class T>
T must(Expected<T> e) {
  if (!e) die(e.error().message);
  return std::move(*e);
}
void must(Status s) {
  if (!s) die(s.message());
}

// The floor for a kernel that must read `bytes` once, timed like everything else here
// (graph replay, L2 flushed): a plain streaming read, 16-byte no-L1 loads, 4 per
// thread in flight, 4 CTAs of 512 threads per SM.
constexpr const char* kReadKernel = R"(
struct ReadParams { const uint4* p; unsigned long long n; unsigned* sink; };
extern "C" __global__ void __launch_bounds__(512) ffnjit_read_floor(const ReadParams a) {
  unsigned acc = 0;
  const unsigned long long stride = 4ull * gridDim.x * blockDim.x;
  for (unsigned long long i = blockIdx.x * blockDim.x + threadIdx.x; i < a.n; i += stride) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const unsigned long long j = i + u * (unsigned long long)(gridDim.x * blockDim.x);
      if (j < a.n)
        asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                     : "=r"(v[u].x), "=r"(v[u].y), "=r"(v[u].z), "=r"(v[u].w) : "l"(a.p + j));
      else
        v[u] = make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  if (acc == 0x9e3779b9u) *a.sink = acc;  // keeps the loads
}
)";
struct ReadParams {
  CUdeviceptr p;
  unsigned long long n;
  CUdeviceptr sink;
};

void time_read_floor(Device& dev, Arch arch, CUstream stream, CUdeviceptr buf, size_t bytes, const char* what) {
  Source src;
  src.spec = default_spec(Family::kTranspose, {8, 8, true}, arch, {1, 1});
  src.kernel_name = "ffnjit_read_floor";
  src.text = kReadKernel;
  auto compiled = must(compile(src));
  KernelSpec spec = src.spec;
  spec.tile.threads = 512;
  auto k = must(load_kernel(compiled, spec));
  auto sink = must(DeviceBuffer::alloc(4));
  ReadParams rp{buf, bytes / 16, sink.ptr()};
  const unsigned grid = unsigned(4 * dev.info().sm_count);
  auto t = measure_graph(dev, stream, [&](CUstream s) { return launch(*k, grid, 1, &rp, s, 512); });
  if (!t) die(t.error().message);
  std::printf("%-70s %9.1f %8s %7.0f\n", what, t->median_us, "-", double(bytes) / t->median_us * 1e-3);
}

}  // namespace

int main(int argc, char** argv) {
  const int m = argc > 1 ? std::atoi(argv[1]) : 8192;
  const int k = argc > 2 ? std::atoi(argv[2]) : 29;
  const LayerShape shape{2048, 5632, true, DType::kBF16};
  Device dev = must(Device::open(0));
  const Arch arch = must(parse_arch(dev.info().arch));
  CUstream stream;
  dev.api()->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING);
  KernelTable kernels;
  auto layer = synth::make_layer(shape.d_model, shape.d_ff, true, double(k) / shape.d_ff, 7);
  auto w = must(DeviceWeights::upload(kernels, arch, {layer.wg.data(), layer.wu.data(), layer.wd.data(), shape}, stream,
                                     false));
  auto xh = synth::make_inputs(m, shape.d_model, 1);
  auto x = must(DeviceBuffer::alloc(xh.size() * 2));
  must(x.upload(xh.data(), xh.size() * 2));
  auto out = must(DeviceBuffer::alloc(xh.size() * 2));
  const double gate_flops = 2.0 * m * shape.d_ff * shape.d_model;

  struct G {
    int tile_n, cap, bm, bk, wm, wn, stages, min_blocks;
  };
  const std::vector<G> gates = {
      {128, 31, 128, 64, 2, 4, 3, 2}, {128, 31, 128, 32, 2, 4, 4, 2}, {256, 63, 128, 64, 2, 4, 3, 1},
      {128, 31, 0, 0, 0, 0, 0, 0},  // bm 0: the cuBLASLt GEMM gate + pack
  };
  std::vector<KernelSpec> gate_specs;
  for (const G& g : gates) {
    const Sparsity sp{g.tile_n, g.cap};
    KernelSpec s = default_spec(g.bm ? Family::kGatePack : Family::kPack, shape, arch, {m, m}, sp);
    if (g.bm) {
      s.tile.bm = g.bm, s.tile.bk = g.bk, s.tile.warps_m = g.wm, s.tile.warps_n = g.wn;
      s.tile.stages = g.stages, s.tile.min_blocks = g.min_blocks;
    }
    gate_specs.push_back(s);
  }
  if (m <= 128) {  // decode: the default gate_pack and the gate_gemv variants
    for (int tile_n : {32, 64, 128})
      gate_specs.push_back(default_spec(Family::kGatePack, shape, arch, {m, m}, {tile_n, tile_n / 4 - 1}));
    for (int tile_n : {32, 64, 128})
      for (int threads : {256, 512})
        for (int unroll : {2, 4, 8}) {
          KernelSpec s = default_spec(Family::kGateGemv, shape, arch, {m, m}, {tile_n, tile_n / 4 - 1});
          s.tile.threads = threads, s.tile.stages = unroll;
          gate_specs.push_back(s);
          if (m > 16) {  // a smaller column block: fewer registers, Wg re-read from L2
            s.tile.bm = 16;
            gate_specs.push_back(s);
          }
          if (m > 32) {  // the largest column block: Wg read by fewer CTA columns
            s.tile.bm = 64;
            gate_specs.push_back(s);
          }
        }
  }
  if (m <= 512 && arch == Arch::kSm90a)  // gate_pack split over a cluster of CTAs per tile
    for (int bm : {16, 64, 128})
      for (int tile_n : {64, 128})
        for (int splits : {2, 4, 8})
          for (int stages : {3, 4}) {
            if (bm > 16 && bm > 2 * m) continue;
            KernelSpec s = default_spec(Family::kGatePack, shape, arch, {bm, bm}, {tile_n, tile_n / 4 - 1});
            s.tile.splits = splits, s.tile.stages = stages;
            gate_specs.push_back(s);
          }
  const double wg_bytes = double(shape.d_ff) * shape.d_model * 2;
  std::printf("tokens %d, k %d, d_model 2048, d_ff 5632 on %s\n", m, k, dev.info().name.c_str());
  std::printf("%-70s %9s %8s %7s %5s\n", "gate kernel", "us", "TFLOP/s", "Wg GB/s", "regs");
  {  // the floors: reading Wg once (a gate's minimum), and all three weights (dense decode)
    auto all = must(DeviceBuffer::alloc(size_t(wg_bytes) * 3));
    time_read_floor(dev, arch, stream, all.ptr(), size_t(wg_bytes), "read floor: 23 MB (Wg) once, streaming loads");
    time_read_floor(dev, arch, stream, all.ptr(), size_t(wg_bytes) * 3, "read floor: 69 MB (Wg, Wu, Wd) once");
  }
  for (const KernelSpec& g : gate_specs) {
    SparseFfnConfig cfg = default_sparse_config(shape, arch, m, g.sparsity);
    cfg.gate = g;
    if (Status s = cfg.validate(); !s) {
      std::printf("%-70s invalid: %s\n", cfg.gate.kernel_name().c_str(), s.message().c_str());
      continue;
    }
    auto ws = must(DeviceBuffer::alloc(sparse_workspace_bytes(cfg, m)));
    auto t = measure_graph(dev, stream, [&](CUstream s) {
      return sparse_ffn_gate(kernels, cfg, w.sparse(), x.ptr(), m, ws.ptr(), s);
    });
    if (!t) die(t.error().message);
    auto lk = must(kernels.get(cfg.gate));
    std::printf("%-70s %9.1f %8.1f %7.0f %5d\n", cfg.gate.kernel_name().c_str(), t->median_us,
                gate_flops / t->median_us * 1e-6, wg_bytes / t->median_us * 1e-3, lk->resources.registers);
  }

  // Up/down stage alone, behind the default gate. The up kernel rewrites the TwELL's
  // values on every replay; values do not change the work, so the timing holds.
  struct U {
    Family family;
    int threads, splits, min_blocks, up_splits;
  };
  std::vector<U> ups = {{Family::kUpDown, 256, 1, 4, 1}, {Family::kUpDown, 128, 1, 8, 1},
                              {Family::kDown, 128, 1, 8, 1},   {Family::kDown, 128, 2, 8, 1},
                              {Family::kDown, 128, 4, 8, 1},   {Family::kDown, 256, 2, 4, 1},
                              {Family::kDown, 128, 2, 8, 2},   {Family::kDown, 128, 2, 8, 4},
                              {Family::kDown, 128, 1, 8, 4}};
  if (m <= 128)  // decode: the fused kernel split over a token's tiles (in-kernel reduce)
    for (int splits : {2, 4, 8, 16})
      for (int threads : {128, 256}) ups.push_back({Family::kUpDown, threads, splits, threads == 128 ? 8 : 4, 1});
  std::printf("%-70s %9s %8s %5s\n", "up/down kernel(s)", "us", "GB/s*", "regs");
  for (const U& u : ups) {
    SparseFfnConfig cfg = default_sparse_config(shape, arch, m);
    cfg.up_down = default_spec(u.family, shape, arch, {m, m});
    cfg.up_down.tile.threads = u.threads;
    cfg.up_down.tile.splits = u.splits;
    cfg.up_down.tile.min_blocks = u.min_blocks;
    cfg.up.tile.splits = u.up_splits;
    if (Status s = cfg.validate(); !s) {
      std::printf("%-70s invalid: %s\n", cfg.up_down.kernel_name().c_str(), s.message().c_str());
      continue;
    }
    auto ws = must(DeviceBuffer::alloc(sparse_workspace_bytes(cfg, m)));
    must(sparse_ffn_gate(kernels, cfg, w.sparse(), x.ptr(), m, ws.ptr(), stream));
    auto t = measure_graph(dev, stream, [&](CUstream s) {
      return sparse_ffn_up_down(kernels, cfg, w.sparse(), x.ptr(), out.ptr(), m, ws.ptr(), s);
    });
    if (!t) die(t.error().message);
    auto lk = must(kernels.get(cfg.up_down));
    const double bytes = double(m) * k * shape.d_model * 2 * 2;  // Wu row + WdT row per active neuron
    const std::string name =
        cfg.up_down.kernel_name() + (cfg.split_up_down() ? " up p" + std::to_string(cfg.up.tile.splits) : "");
    std::printf("%-70s %9.1f %8.0f %5d\n", name.c_str(), t->median_us, bytes / t->median_us * 1e-3,
                lk->resources.registers);
  }
  return 0;
}
