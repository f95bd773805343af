// Small memory-bound helpers: the weight transpose done once at layer registration
// (Wd [d_model][d_ff] -> WdT [d_ff][d_model]) and the dense path's activation.
#pragma once

#include "ffnjit/common.cuh"

namespace ffnjit {

// 32x32 tiles through shared memory (padded against bank conflicts); block 32x8.
__device__ void transpose_bf16(const TransposeParams& p) {
  __shared__ u16 tile[32][33];
  const int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
  for (int i = threadIdx.y; i < 32; i += 8) {
    const int r = r0 + i, c = c0 + threadIdx.x;
    if (r < p.rows && c < p.cols) tile[i][threadIdx.x] = p.in[i64(r) * p.cols + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += 8) {
    const int c = c0 + i, r = r0 + threadIdx.x;
    if (r < p.rows && c < p.cols) p.out[i64(c) * p.rows + r] = tile[threadIdx.x][i];
  }
}

// act(z) as the sparse path uses it: 0 for an inactive neuron, else the TwELL's bf16
// value (z, or bf16(z * z) for relu2), so the dense fallback decides every neuron as the
// sparse kernels do (NaN stays active, as in torch.relu).
template <int ACT>
__device__ __forceinline__ float dense_act_value(float z, float threshold) {
  return act_active<ACT>(z, threshold) ? bf16_to_f32(act_value_bf16<ACT>(f32_to_bf16(z))) : 0.0f;
}

// h = act(z) * u (gated) or act(z), 8 elements per thread, fp32 math, one rounding to
// bf16. z and u are the first GEMM's bf16 outputs (biases already added).
template <int D_FF, bool GATED, int ACT>
__device__ void dense_act(const DenseActParams& p) {
  constexpr int kVecs = D_FF / 8, kIn = GATED ? 2 * D_FF : D_FF;
  const i64 total = p.tokens * kVecs;
  const float t = p.threshold;
  for (i64 i = blockIdx.x * i64(blockDim.x) + threadIdx.x; i < total; i += i64(gridDim.x) * blockDim.x) {
    const i64 m = i / kVecs;
    const int v = int(i % kVecs);
    const Vec8 g = ld_vec8(p.gu + m * (p.u ? D_FF : kIn) + v * 8);
    Vec8 o;
    if (GATED) {
      const Vec8 u = ld_vec8(p.u ? p.u + m * D_FF + v * 8 : p.gu + m * kIn + D_FF + v * 8);
#pragma unroll
      for (int k = 0; k < 4; ++k)
        o.w[k] = pack_bf16x2(dense_act_value<ACT>(bf16_lo(g.w[k]), t) * bf16_lo(u.w[k]),
                             dense_act_value<ACT>(bf16_hi(g.w[k]), t) * bf16_hi(u.w[k]));
    } else {
#pragma unroll
      for (int k = 0; k < 4; ++k)
        o.w[k] = pack_bf16x2(dense_act_value<ACT>(bf16_lo(g.w[k]), t),
                             dense_act_value<ACT>(bf16_hi(g.w[k]), t));
    }
    *reinterpret_cast<Vec8*>(p.h + m * D_FF + v * 8) = o;
  }
}

}  // namespace ffnjit
