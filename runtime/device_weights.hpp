// A layer's weights on the device in the layouts the kernels read: [Wg; Wu] in one
// allocation (the dense GEMM reads both at once), Wd transposed once (WdT), and Wd
// itself when the dense path may run (with_dense); the biases in bf16 ([bg; bu] in one
// allocation for the dense GEMM's bias epilogue, bd).
#pragma once

#include <cstdint>

#include "model/checkpoint.hpp"
#include "runtime/dense_ffn.hpp"
#include "runtime/device.hpp"
#include "runtime/sparse_ffn.hpp"

namespace ffnjit {

// Host bf16 weights in Hugging Face layouts (wg null when non-gated), the biases as
// floats (rounded to bf16 on upload), null where the layer has none; `layer` says
// which it has (a flag without its data, or data without its flag, is refused).
struct HostFfnWeights {
  const uint16_t* wg = nullptr;
  const uint16_t* wu = nullptr;
  const uint16_t* wd = nullptr;
  LayerShape layer;
  const float* gate_bias = nullptr;  // [d_ff], gated layers only
  const float* up_bias = nullptr;    // [d_ff]
  const float* down_bias = nullptr;  // [d_model]
  float threshold = 0.0f;            // Activation::kFatRelu: a finite value >= 0
};

// The same on the device (an engine's tensors, ffnjit_layer_register): bf16 device
// pointers on `device`, weights 16-byte aligned.
struct DeviceFfnSource {
  const void* wg = nullptr;
  const void* wu = nullptr;
  const void* wd = nullptr;
  LayerShape layer;
  const void* gate_bias = nullptr;
  const void* up_bias = nullptr;
  const void* down_bias = nullptr;
  float threshold = 0.0f;
};

class DeviceWeights {
 public:
  // Uploads and prepares; synchronizes `stream` before returning.
  static Expected<DeviceWeights> upload(KernelTable& kernels, Arch arch, const HostFfnWeights& w, CUstream stream,
                                       bool with_dense);
  // Copies an engine's device tensors (validated: device, alignment, readable sizes; the
  // messages name the tensor) through the host into layer-owned memory: registration is
  // rare and this keeps one upload path; the caller's buffers are free afterwards.
  static Expected<DeviceWeights> copy_from_device(KernelTable& kernels, Arch arch, int device,
                                                  const DeviceFfnSource& src, bool with_dense);
  FfnDeviceWeights sparse() const;
  DenseDeviceWeights dense() const;  // needs with_dense
  bool has_dense() const { return wd_.ptr() != 0; }
  const LayerShape& layer() const { return layer_; }

 private:
  LayerShape layer_;
  float threshold_ = 0.0f;
  DeviceBuffer gate_up_, wd_, wd_t_;
  DeviceBuffer gate_up_bias_;  // gated: [bg; bu] (zeros for a missing half); non-gated: bu
  DeviceBuffer down_bias_;
};

// A checkpoint layer as the kernels compute it: its shape, the model's activation and
// the biases the layer has (the tuner plans and uploads with it).
Expected<LayerShape> checkpoint_layer_shape(const model::ModelInfo& info,
                                            const model::FfnLayer& layer);
// Host weights of a loaded checkpoint layer for DeviceWeights::upload, pointing into `w`.
HostFfnWeights host_weights(const model::LayerWeights& w, const LayerShape& layer);

}  // namespace ffnjit
