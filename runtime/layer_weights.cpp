// A layer's weights on the device in the layouts the kernels read.
#include "runtime/layer_weights.hpp"

namespace ffnjit {

Expected<LayerWeights> LayerWeights::upload(KernelTable& kernels, Arch arch, const HostFfnWeights& w,
                                            CUstream stream, bool with_dense) {
  LayerWeights out;
  out.layer_ = w.layer;
  const size_t bytes = size_t(w.layer.d_ff) * w.layer.d_model * 2;
  auto alloc_upload = [&](DeviceBuffer& b, const uint16_t* host) -> Status {
    auto a = DeviceBuffer::alloc(bytes);
    FFNJIT_TRY(a);
    b = std::move(*a);
    return b.upload(host, bytes);
  };
  if (w.layer.gated) FFNJIT_TRY(alloc_upload(out.wg_, w.wg));
  FFNJIT_TRY(alloc_upload(out.wu_, w.wu));
  FFNJIT_TRY(alloc_upload(out.wd_, w.wd));
  auto wdt = DeviceBuffer::alloc(bytes);
  FFNJIT_TRY(wdt);
  out.wd_t_ = std::move(*wdt);
  if (with_dense && w.layer.gated) {
    auto gu = DeviceBuffer::alloc(2 * bytes);
    FFNJIT_TRY(gu);
    out.w_gate_up_ = std::move(*gu);
    FFNJIT_TRY(out.w_gate_up_.upload(w.wg, bytes));
    FFNJIT_TRY(out.w_gate_up_.upload(w.wu, bytes, bytes));
  }
  FFNJIT_TRY(transpose_down(kernels, arch, out.wd_.ptr(), out.wd_t_.ptr(), w.layer.d_model, w.layer.d_ff, stream));
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  FFNJIT_CU(cuStreamSynchronize(stream));
  if (!with_dense) out.wd_ = DeviceBuffer();  // only the dense path reads Wd itself
  return out;
}

FfnDeviceWeights LayerWeights::sparse() const { return {wg_.ptr(), wu_.ptr(), wd_t_.ptr(), layer_}; }

DenseDeviceWeights LayerWeights::dense() const {
  return {layer_.gated ? w_gate_up_.ptr() : wu_.ptr(), wd_.ptr(), layer_};
}

}  // namespace ffnjit
