// Row-major bf16 GEMMs on cuBLASLt, C[m][n] = act(A[m][k] . W[n][k]^T + bias[n]) with an
// optional bias and ReLU epilogue: the dense FFN's projections and the sparse path's
// GEMM gate.
#pragma once

#include <cuda.h>

#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "support/status.hpp"

namespace ffnjit {

class LtGemms {
 public:
  // Device workspace every run() may use (cuBLASLt split-K and friends).
  static constexpr size_t kWorkspace = 32u << 20;

  static Expected<std::unique_ptr<LtGemms>> create();
  ~LtGemms();

  // Enqueues on `stream`. `bias`: bf16 [n] added in fp32 before the (ReLU and) rounding
  // to bf16, or 0 for none. The first call for a shape, epilogue and bias pointer runs
  // cuBLASLt's heuristic on the host (tens of microseconds): the pointer is an attribute
  // of the matmul descriptor, so each layer's bias has its own plans, which later calls
  // only look up. Thread-safe.
  Status run(int m, int n, int k, bool relu, CUdeviceptr bias, CUdeviceptr a, CUdeviceptr w,
             CUdeviceptr c, CUdeviceptr workspace, CUstream stream);

  struct Plan;  // one shape's matmul descriptor, layouts and algorithm

 private:
  struct Impl;
  explicit LtGemms(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ffnjit
