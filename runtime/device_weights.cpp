// A layer's weights on the device in the layouts the kernels read.
#include "runtime/device_weights.hpp"

namespace ffnjit {

Expected<DeviceWeights> DeviceWeights::upload(KernelTable& kernels, Arch arch, const HostFfnWeights& w,
                                              CUstream stream, bool with_dense) {
  DeviceWeights out;
  out.layer_ = w.layer;
  const size_t bytes = size_t(w.layer.d_ff) * w.layer.d_model * 2;
  // Wg and Wu share one allocation, Wg first: the dense path runs one GEMM over both.
  auto gu = DeviceBuffer::alloc(w.layer.gated ? 2 * bytes : bytes);
  FFNJIT_TRY(gu);
  out.gate_up_ = std::move(*gu);
  if (w.layer.gated) FFNJIT_TRY(out.gate_up_.upload(w.wg, bytes));
  FFNJIT_TRY(out.gate_up_.upload(w.wu, bytes, w.layer.gated ? bytes : 0));
  auto wd = DeviceBuffer::alloc(bytes);
  FFNJIT_TRY(wd);
  out.wd_ = std::move(*wd);
  FFNJIT_TRY(out.wd_.upload(w.wd, bytes));
  auto wdt = DeviceBuffer::alloc(bytes);
  FFNJIT_TRY(wdt);
  out.wd_t_ = std::move(*wdt);
  FFNJIT_TRY(transpose_down(kernels, arch, out.wd_.ptr(), out.wd_t_.ptr(), w.layer.d_model, w.layer.d_ff, stream));
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  FFNJIT_CU(cuStreamSynchronize(stream));
  if (!with_dense) out.wd_ = DeviceBuffer();  // only the dense path reads Wd itself
  return out;
}

FfnDeviceWeights DeviceWeights::sparse() const {
  const size_t bytes = size_t(layer_.d_ff) * layer_.d_model * 2;
  const CUdeviceptr wg = layer_.gated ? gate_up_.ptr() : 0;
  const CUdeviceptr wu = gate_up_.ptr() + (layer_.gated ? bytes : 0);
  return {wg, wu, wd_t_.ptr(), layer_};
}

DenseDeviceWeights DeviceWeights::dense() const { return {gate_up_.ptr(), wd_.ptr(), layer_}; }

}  // namespace ffnjit
