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
  DeviceBuffer w, bias;  // the current layer's gate (or up, non-gated) weights and their bias

  Status run(const model::LayerWeights& L, const uint16_t* x, int64_t tokens, float* gate) {
    FFNJIT_TRY(dev->make_current());
    const size_t wbytes = size_t(L.d_ff) * L.d_model * 2;
    const std::vector<float>& gate_bias = L.gated ? L.gate_bias : L.up_bias;
    if (layer_index != L.index) {
      auto b = DeviceBuffer::alloc(wbytes);
      FFNJIT_TRY(b);
      w = std::move(*b);
      FFNJIT_TRY(w.upload(L.gated ? L.wg.data() : L.wu.data(), wbytes));
      bias = DeviceBuffer();
      if (!gate_bias.empty()) {
        std::vector<uint16_t> bb(gate_bias.size());
        for (size_t i = 0; i < bb.size(); ++i) bb[i] = float_to_bf16(gate_bias[i]);
        auto d = DeviceBuffer::alloc(bb.size() * 2);
        FFNJIT_TRY(d);
        bias = std::move(*d);
        FFNJIT_TRY(bias.upload(bb.data(), bb.size() * 2));
      }
      layer_index = L.index;
    }
    // The kernels' own activation and bias: the profile sees what serving decides.
    LayerShape shape{L.d_model, L.d_ff, L.gated, DType::kBF16};
    shape.activation = L.activation == ref::Activation::kRelu2     ? Activation::kRelu2
                       : L.activation == ref::Activation::kFatRelu ? Activation::kFatRelu
                                                                   : Activation::kRelu;
    (L.gated ? shape.gate_bias : shape.up_bias) = !gate_bias.empty();
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
    (L.gated ? fw.gate_bias : fw.up_bias) = bias.ptr();
    fw.threshold = L.activation_threshold;
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
