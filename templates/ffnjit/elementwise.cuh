// Small memory-bound helpers: the weight transpose done once at layer registration
// (Wd [d_model][d_ff] -> WdT [d_ff][d_model]) and the dense baseline's activation.
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

// ReLU that keeps NaN, as torch.relu does.
__device__ __forceinline__ float relu(float v) { return is_active(v) ? v : 0.0f; }

// h = relu(g) * u (gated) or relu(u), 8 elements per thread, fp32 math.
template <int D_FF, bool GATED>
__device__ void dense_act(const DenseActParams& p) {
  constexpr int kVecs = D_FF / 8, kIn = GATED ? 2 * D_FF : D_FF;
  const i64 total = p.tokens * kVecs;
  for (i64 i = blockIdx.x * i64(blockDim.x) + threadIdx.x; i < total; i += i64(gridDim.x) * blockDim.x) {
    const i64 m = i / kVecs;
    const int v = int(i % kVecs);
    const Vec8 g = ld_vec8(p.gu + m * (p.u ? D_FF : kIn) + v * 8);
    Vec8 o;
    if (GATED) {
      const Vec8 u = ld_vec8(p.u ? p.u + m * D_FF + v * 8 : p.gu + m * kIn + D_FF + v * 8);
#pragma unroll
      for (int k = 0; k < 4; ++k)
        o.w[k] = pack_bf16x2(relu(bf16_lo(g.w[k])) * bf16_lo(u.w[k]), relu(bf16_hi(g.w[k])) * bf16_hi(u.w[k]));
    } else {
#pragma unroll
      for (int k = 0; k < 4; ++k) o.w[k] = pack_bf16x2(relu(bf16_lo(g.w[k])), relu(bf16_hi(g.w[k])));
    }
    *reinterpret_cast<Vec8*>(p.h + m * D_FF + v * 8) = o;
  }
}

}  // namespace ffnjit
