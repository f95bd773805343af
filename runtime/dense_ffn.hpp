// The dense FFN on cuBLASLt: the fallback the tuner picks where sparsity does not
// pay, and the baseline every benchmark ratio is measured against. Gated layers run
// one GEMM over the stacked [Wg; Wu] (+ [bg; bu] in its bias epilogue), the fused
// activation (dense_act), and the down GEMM (+ bd); non-gated ReLU layers fuse ReLU (and
// the bias) into the first GEMM's epilogue, other activations run dense_act after it.
#pragma once

#include <cuda.h>

#include <map>
#include <memory>

#include "codegen/kernel_spec.hpp"
#include "runtime/kernels.hpp"

namespace ffnjit {

struct DenseDeviceWeights {
  CUdeviceptr w_gate_up = 0;  // gated: [2 * d_ff][d_model] = [Wg; Wu]; non-gated: Wu [d_ff][d_model]
  CUdeviceptr w_down = 0;     // Wd [d_model][d_ff]
  LayerShape layer;
  // bf16 biases (0 when the layer has none): gated [2 * d_ff] = [bg; bu] (zeros for a
  // missing half), non-gated bu [d_ff]; bd [d_model].
  CUdeviceptr gate_up_bias = 0;
  CUdeviceptr down_bias = 0;
  float threshold = 0.0f;  // Activation::kFatRelu's
};

class DenseFfn {
 public:
  static Expected<std::unique_ptr<DenseFfn>> create(KernelTable& kernels, Arch arch, const LayerShape& layer);
  ~DenseFfn();

  size_t workspace_bytes(int tokens) const;
  // Enqueues on `stream`; captures into a CUDA graph once the GEMM plans for this
  // token count exist (the first call for a count runs cuBLASLt's heuristic on the host).
  Status forward(const DenseDeviceWeights& w, CUdeviceptr x, CUdeviceptr out, int tokens, CUdeviceptr workspace,
                 CUstream stream);

 private:
  struct Impl;
  explicit DenseFfn(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ffnjit
