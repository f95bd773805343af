// The dense FFN on cuBLASLt (fallback and benchmark baseline).
#include "runtime/dense_ffn.hpp"

#include "runtime/lt_gemm.hpp"
#include "templates/ffnjit/params.h"

namespace ffnjit {
namespace {

size_t align256(size_t x) { return (x + 255) & ~size_t(255); }

}  // namespace

struct DenseFfn::Impl {
  LayerShape layer;
  LtGemms* gemms = nullptr;
  const LoadedKernel* act = nullptr;
};

DenseFfn::DenseFfn(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DenseFfn::~DenseFfn() = default;

Expected<std::unique_ptr<DenseFfn>> DenseFfn::create(KernelTable& kernels, Arch arch, const LayerShape& layer) {
  auto impl = std::make_unique<Impl>();
  impl->layer = layer;
  auto gemms = kernels.gemms();
  FFNJIT_TRY(gemms);
  impl->gemms = *gemms;
  if (layer.gated ||
      layer.activation != Activation::kRelu) {  // non-gated ReLU: the GEMM's epilogue
    auto act = kernels.get(default_spec(Family::kDenseAct, layer, arch, {1, 1}));
    FFNJIT_TRY(act);
    impl->act = *act;
  }
  return std::unique_ptr<DenseFfn>(new DenseFfn(std::move(impl)));
}

size_t DenseFfn::workspace_bytes(int tokens) const {
  const size_t m = size_t(tokens), f = size_t(impl_->layer.d_ff);
  return LtGemms::kWorkspace + align256(m * f * 2 * (impl_->layer.gated ? 2 : 1)) + align256(m * f * 2);
}

Status DenseFfn::forward(const DenseDeviceWeights& w, CUdeviceptr x, CUdeviceptr out, int tokens,
                         CUdeviceptr workspace, CUstream stream) {
  if (tokens == 0) return {};
  const Impl& I = *impl_;
  const LayerShape& L = I.layer;
  const int dm = L.d_model, dff = L.d_ff, n1 = L.gated ? 2 * dff : dff;
  const bool first_bias = L.gate_bias || L.up_bias;
  if ((first_bias && !w.gate_up_bias) || (L.down_bias && !w.down_bias))
    return internal_error("dense layer has a bias flag without its device pointer");
  const CUdeviceptr lt_ws = workspace;
  const CUdeviceptr gu = workspace + LtGemms::kWorkspace;
  // Non-gated: h overwrites z in place (dense_act reads each vector before writing it).
  const CUdeviceptr h = L.gated ? gu + align256(size_t(tokens) * n1 * 2) : gu;
  FFNJIT_TRY(I.gemms->run(tokens, n1, dm, !I.act, first_bias ? w.gate_up_bias : 0, x, w.w_gate_up,
                          gu, lt_ws, stream));
  if (I.act) {
    DenseActParams p{reinterpret_cast<const u16*>(gu), reinterpret_cast<u16*>(h), tokens,
                     w.threshold};
    const long long vecs = (long long)tokens * dff / 8;
    const unsigned blocks = unsigned(std::min<long long>((vecs + 255) / 256, 132LL * 16));
    FFNJIT_TRY(launch(*I.act, blocks, 1, &p, stream));
  }
  return I.gemms->run(tokens, dm, dff, false, L.down_bias ? w.down_bias : 0, h, w.w_down, out,
                      lt_ws, stream);
}

}  // namespace ffnjit
