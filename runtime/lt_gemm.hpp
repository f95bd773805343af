// Row-major bf16 GEMMs on cuBLASLt, C[m][n] = A[m][k] . W[n][k]^T with an optional
// ReLU epilogue: the dense FFN's projections and the sparse path's GEMM gate.
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

  // Enqueues on `stream`. The first call for a shape runs cuBLASLt's heuristic on
  // the host (tens of microseconds); later ones only look the plan up. Thread-safe.
  Status run(int m, int n, int k, bool relu, CUdeviceptr a, CUdeviceptr w, CUdeviceptr c, CUdeviceptr workspace,
             CUstream stream);

  struct Plan;  // one shape's matmul descriptor, layouts and algorithm

 private:
  struct Impl;
  explicit LtGemms(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ffnjit
