// A layer's weights on the device in the layouts the kernels read: [Wg; Wu] in one
// allocation (the dense GEMM reads both at once), Wd transposed once (WdT), and Wd
// itself when the dense path may run (with_dense).
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

class DeviceWeights {
 public:
  // Uploads and prepares; synchronizes `stream` before returning.
  static Expected<DeviceWeights> upload(KernelTable& kernels, Arch arch, const HostFfnWeights& w, CUstream stream,
                                       bool with_dense);
  FfnDeviceWeights sparse() const;
  DenseDeviceWeights dense() const;  // needs with_dense
  bool has_dense() const { return wd_.ptr() != 0; }
  const LayerShape& layer() const { return layer_; }

 private:
  LayerShape layer_;
  DeviceBuffer gate_up_, wd_, wd_t_;
};

}  // namespace ffnjit
