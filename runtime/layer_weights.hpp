// A layer's weights on the device in the layouts the kernels read: Wg and Wu as
// given, Wd transposed once (WdT), and optionally [Wg; Wu] stacked for the dense path.
#pragma once

#include <cstdint>

#include "runtime/dense_ffn.hpp"
#include "runtime/device.hpp"
#include "runtime/sparse_ffn.hpp"

namespace ffnjit {

// Host bf16 weights in Hugging Face layouts (wg null when non-gated).
struct HostFfnWeights {
  const uint16_t* wg = nullptr;
  const uint16_t* wu = nullptr;
  const uint16_t* wd = nullptr;
  LayerShape layer;
};

class LayerWeights {
 public:
  // Uploads and prepares; synchronizes `stream` before returning.
  static Expected<LayerWeights> upload(KernelTable& kernels, Arch arch, const HostFfnWeights& w, CUstream stream,
                                       bool with_dense);
  FfnDeviceWeights sparse() const;
  DenseDeviceWeights dense() const;  // needs with_dense
  const LayerShape& layer() const { return layer_; }

 private:
  LayerShape layer_;
  DeviceBuffer wg_, wu_, wd_, wd_t_, w_gate_up_;
};

}  // namespace ffnjit
