// The dense FFN on cuBLASLt: the fallback the tuner picks where sparsity does not
// pay, and the baseline every benchmark ratio is measured against. Gated layers run
// one GEMM over the stacked [Wg; Wu], the fused activation, and the down GEMM;
// non-gated layers fuse ReLU into the first GEMM's epilogue.
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
