// A layer's weights on the device in the layouts the kernels read.
#include "runtime/device_weights.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "support/bf16.hpp"

namespace ffnjit {
namespace {

// A flag without its data, or data without its flag, would make the kernels drop a
// bias or read a missing one: refused rather than guessed.
Status check_biases(const LayerShape& L, bool gate, bool up, bool down, float threshold) {
  if (gate && !L.gated)
    return user_error("gate_bias is set for a non-gated layer; its bias is up_bias (fc1.bias)");
  if (L.gate_bias != gate || L.up_bias != up || L.down_bias != down)
    return internal_error("layer bias flags disagree with the biases given");
  if (L.activation == Activation::kFatRelu ? !(threshold >= 0.0f && std::isfinite(threshold))
                                           : threshold != 0.0f)
    return user_error("activation_threshold=" + std::to_string(threshold) +
                      (L.activation == Activation::kFatRelu
                           ? " must be a finite number >= 0 for fatrelu"
                           : " is only meaningful for fatrelu; pass 0"));
  return {};
}

std::vector<uint16_t> to_bf16(const float* v, size_t n) {
  std::vector<uint16_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = float_to_bf16(v[i]);
  return out;
}

}  // namespace

Expected<DeviceWeights> DeviceWeights::upload(KernelTable& kernels, Arch arch, const HostFfnWeights& w,
                                              CUstream stream, bool with_dense) {
  const LayerShape& L = w.layer;
  FFNJIT_TRY(check_biases(L, w.gate_bias != nullptr, w.up_bias != nullptr, w.down_bias != nullptr,
                          w.threshold));
  DeviceWeights out;
  out.layer_ = L;
  out.threshold_ = w.threshold;
  const size_t bytes = size_t(L.d_ff) * L.d_model * 2;
  // Wg and Wu share one allocation, Wg first: the dense path runs one GEMM over both.
  auto gu = DeviceBuffer::alloc(L.gated ? 2 * bytes : bytes);
  FFNJIT_TRY(gu);
  out.gate_up_ = std::move(*gu);
  if (L.gated) FFNJIT_TRY(out.gate_up_.upload(w.wg, bytes));
  FFNJIT_TRY(out.gate_up_.upload(w.wu, bytes, L.gated ? bytes : 0));
  // The biases likewise: [bg; bu] is the dense GEMM's bias over [Wg; Wu] (a missing half
  // is zeros there; the sparse kernels do not read it).
  if (L.gate_bias || L.up_bias) {
    const size_t n = size_t(L.d_ff);
    std::vector<uint16_t> b(L.gated ? 2 * n : n, 0);
    if (L.gate_bias) {
      const auto g = to_bf16(w.gate_bias, n);
      std::copy(g.begin(), g.end(), b.begin());
    }
    if (L.up_bias) {
      const auto u = to_bf16(w.up_bias, n);
      std::copy(u.begin(), u.end(), b.begin() + (L.gated ? n : 0));
    }
    auto buf = DeviceBuffer::alloc(b.size() * 2);
    FFNJIT_TRY(buf);
    out.gate_up_bias_ = std::move(*buf);
    FFNJIT_TRY(out.gate_up_bias_.upload(b.data(), b.size() * 2));
  }
  if (L.down_bias) {
    const auto b = to_bf16(w.down_bias, size_t(L.d_model));
    auto buf = DeviceBuffer::alloc(b.size() * 2);
    FFNJIT_TRY(buf);
    out.down_bias_ = std::move(*buf);
    FFNJIT_TRY(out.down_bias_.upload(b.data(), b.size() * 2));
  }
  auto wd = DeviceBuffer::alloc(bytes);
  FFNJIT_TRY(wd);
  out.wd_ = std::move(*wd);
  FFNJIT_TRY(out.wd_.upload(w.wd, bytes));
  auto wdt = DeviceBuffer::alloc(bytes);
  FFNJIT_TRY(wdt);
  out.wd_t_ = std::move(*wdt);
  FFNJIT_TRY(
      transpose_down(kernels, arch, out.wd_.ptr(), out.wd_t_.ptr(), L.d_model, L.d_ff, stream));
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  FFNJIT_CU(cuStreamSynchronize(stream));
  if (!with_dense) out.wd_ = DeviceBuffer();  // only the dense path reads Wd itself
  return out;
}

Expected<DeviceWeights> DeviceWeights::copy_from_device(KernelTable& kernels, Arch arch, int device,
                                                        const DeviceFfnSource& src,
                                                        bool with_dense) {
  const LayerShape& L = src.layer;
  FFNJIT_TRY(check_biases(L, src.gate_bias != nullptr, src.up_bias != nullptr,
                          src.down_bias != nullptr, src.threshold));
  if (!src.wu || !src.wd || L.gated != (src.wg != nullptr))
    return internal_error(
        "copy_from_device needs up_proj, down_proj, and gate_proj exactly when gated");
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  const size_t mat = size_t(L.d_ff) * L.d_model, dff = size_t(L.d_ff), dm = size_t(L.d_model);
  struct Tensor {
    const char* name;
    const void* ptr;
    size_t elems;
    bool weight;  // weights must be 16-byte aligned; biases are copied, any bf16 alignment
    const char* shape;
  } tensors[] = {{"gate_proj", src.wg, mat, true, "d_ff*d_model"},
                 {"up_proj", src.wu, mat, true, "d_ff*d_model"},
                 {"down_proj", src.wd, mat, true, "d_model*d_ff"},
                 {"gate_bias", src.gate_bias, dff, false, "d_ff"},
                 {"up_bias", src.up_bias, dff, false, "d_ff"},
                 {"down_bias", src.down_bias, dm, false, "d_model"}};
  std::vector<uint16_t> host[6];
  for (size_t i = 0; i < 6; ++i) {
    const Tensor& t = tensors[i];
    if (!t.ptr) continue;
    const uintptr_t p = reinterpret_cast<uintptr_t>(t.ptr);
    if (p % (t.weight ? 16 : 2))
      return user_error(
          std::string(t.name) + " is not " + (t.weight ? "16" : "2") + "-byte aligned; " +
          (t.weight ? "weight pointers must be 16-byte aligned" : "pass a bf16 tensor"));
    int ordinal = -1;
    if (cu->cuPointerGetAttribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, CUdeviceptr(p)) !=
        CUDA_SUCCESS)
      ordinal = -1;
    if (ordinal != device)
      return user_error(
          ordinal < 0 ? std::string(t.name) + " is not CUDA device memory; pass device pointers"
                      : std::string(t.name) + " is on device " + std::to_string(ordinal) +
                            ", the context on device " + std::to_string(device));
    host[i].resize(t.elems);
    if (cu->cuMemcpyDtoH(host[i].data(), CUdeviceptr(p), t.elems * 2) != CUDA_SUCCESS)
      return user_error(std::string(t.name) + " could not be read; it must hold " + t.shape +
                        " bf16 values");
  }
  std::vector<float> bias[3];
  for (int i = 0; i < 3; ++i)
    for (uint16_t v : host[3 + i]) bias[i].push_back(bf16_to_float(v));
  auto f = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
  HostFfnWeights hw{L.gated ? host[0].data() : nullptr,
                    host[1].data(),
                    host[2].data(),
                    L,
                    f(bias[0]),
                    f(bias[1]),
                    f(bias[2]),
                    src.threshold};
  return upload(kernels, arch, hw, nullptr, with_dense);
}

FfnDeviceWeights DeviceWeights::sparse() const {
  const size_t bytes = size_t(layer_.d_ff) * layer_.d_model * 2;
  FfnDeviceWeights w;
  w.w_gate = layer_.gated ? gate_up_.ptr() : 0;
  w.w_up = gate_up_.ptr() + (layer_.gated ? bytes : 0);
  w.w_down_t = wd_t_.ptr();
  w.layer = layer_;
  w.gate_bias = layer_.gate_bias ? gate_up_bias_.ptr() : 0;
  w.up_bias =
      layer_.up_bias ? gate_up_bias_.ptr() + (layer_.gated ? size_t(layer_.d_ff) * 2 : 0) : 0;
  w.down_bias = down_bias_.ptr();
  w.threshold = threshold_;
  return w;
}

DenseDeviceWeights DeviceWeights::dense() const {
  DenseDeviceWeights w;
  w.w_gate_up = gate_up_.ptr();
  w.w_down = wd_.ptr();
  w.layer = layer_;
  w.gate_up_bias = gate_up_bias_.ptr();
  w.down_bias = down_bias_.ptr();
  w.threshold = threshold_;
  return w;
}

Expected<LayerShape> checkpoint_layer_shape(const model::ModelInfo& info,
                                            const model::FfnLayer& layer) {
  auto act = parse_activation(info.activation.empty() ? "relu" : info.activation);
  FFNJIT_TRY(act);
  LayerShape s{layer.d_model, layer.d_ff, layer.gated, DType::kBF16};
  s.activation = *act;
  s.gate_bias = !layer.gate_bias.empty();
  s.up_bias = !layer.up_bias.empty();
  s.down_bias = !layer.down_bias.empty();
  return s;
}

HostFfnWeights host_weights(const model::LayerWeights& w, const LayerShape& layer) {
  auto f = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
  return {w.gated ? w.wg.data() : nullptr,
          w.wu.data(),
          w.wd.data(),
          layer,
          f(w.gate_bias),
          f(w.up_bias),
          f(w.down_bias),
          w.activation_threshold};
}

}  // namespace ffnjit
