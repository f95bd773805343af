// The gate evaluator `ffnjit profile` uses on a GPU: gate_pack with full capacity.
#include "tuner/gpu_gate.hpp"

#include "runtime/sparse_ffn.hpp"
#include "support/bf16.hpp"

namespace ffnjit {
namespace {

struct GpuGate {
  std::unique_ptr<Device> dev;
  KernelTable kernels;
  Arch arch = Arch::kSm90a;
  CUstream stream = nullptr;
  int layer_index = -1;
  DeviceBuffer w;  // the current layer's gate (or up, non-gated) weights

  Status run(const model::LayerWeights& L, const uint16_t* x, int64_t tokens, float* gate) {
    if (!L.up_bias.empty())
      return unsupported("layer " + std::to_string(L.index) +
                         " has an up bias; the GPU gate has no bias term; profile with --cpu");
    FFNJIT_TRY(dev->make_current());
    const size_t wbytes = size_t(L.d_ff) * L.d_model * 2;
    if (layer_index != L.index) {
      auto b = DeviceBuffer::alloc(wbytes);
      FFNJIT_TRY(b);
      w = std::move(*b);
      FFNJIT_TRY(w.upload(L.gated ? L.wg.data() : L.wu.data(), wbytes));
      layer_index = L.index;
    }
    const LayerShape shape{L.d_model, L.d_ff, L.gated, DType::kBF16};
    const int tile_n = 128;
    const int m = int(tokens);
    SparseFfnConfig cfg = default_sparse_config(shape, arch, m, Sparsity{tile_n, tile_n});
    auto dx = DeviceBuffer::alloc(size_t(m) * L.d_model * 2);
    FFNJIT_TRY(dx);
    FFNJIT_TRY(dx->upload(x, size_t(m) * L.d_model * 2));
    auto ws = DeviceBuffer::alloc(sparse_workspace_bytes(cfg, m));
    FFNJIT_TRY(ws);
    FfnDeviceWeights fw;
    fw.layer = shape;
    (L.gated ? fw.w_gate : fw.w_up) = w.ptr();
    FFNJIT_TRY(sparse_ffn_gate(kernels, cfg, fw, dx->ptr(), m, ws->ptr(), stream));
    const drv::Api* cu = dev->api();
    FFNJIT_CU(cuStreamSynchronize(stream));
    const size_t nt = size_t(cfg.gate.n_tiles());
    std::vector<uint32_t> counts(size_t(m) * nt), entries(size_t(m) * nt * tile_n);
    FFNJIT_TRY(ws->download(counts.data(), counts.size() * 4));
    FFNJIT_TRY(ws->download(entries.data(), entries.size() * 4, (counts.size() * 4 + 255) & ~size_t(255)));
    std::fill(gate, gate + size_t(m) * L.d_ff, 0.0f);
    for (size_t slot = 0; slot < counts.size(); ++slot) {
      const size_t tok = slot / nt, tile = slot % nt;
      for (uint32_t e = 0; e < counts[slot]; ++e) {
        const uint32_t entry = entries[slot * tile_n + e];
        gate[tok * L.d_ff + tile * tile_n + (entry & 0xffff)] = bf16_to_float(uint16_t(entry >> 16));
      }
    }
    return {};
  }
};

}  // namespace

Expected<model::GateFn> gpu_gate(int device) {
  auto dev = Device::open(device);
  FFNJIT_TRY(dev);
  auto g = std::make_shared<GpuGate>();
  g->dev = std::make_unique<Device>(std::move(*dev));
  auto arch = parse_arch(g->dev->info().arch);
  FFNJIT_TRY(arch);
  g->arch = *arch;
  const drv::Api* cu = g->dev->api();
  FFNJIT_CU(cuStreamCreate(&g->stream, CU_STREAM_NON_BLOCKING));
  return model::GateFn([g](const model::LayerWeights& L, const uint16_t* x, int64_t tokens, float* gate) {
    return g->run(L, x, tokens, gate);
  });
}

}  // namespace ffnjit
