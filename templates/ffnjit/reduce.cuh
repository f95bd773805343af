// Sums the fp32 partial outputs of a split up_down launch into the bf16 output, in
// split order (deterministic).
#pragma once

#include "ffnjit/common.cuh"

namespace ffnjit {

template <int D_MODEL, int THREADS, int SPLITS>
struct ReduceConfig {
  static constexpr int kModel = D_MODEL, kThreads = THREADS, kSplits = SPLITS;
};

template <class C>
__device__ void reduce_splits(const ReduceParams& p) {
  const int m = blockIdx.x;
  for (int v = threadIdx.x; v < C::kModel / 8; v += C::kThreads) {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int k = 0; k < C::kSplits; ++k) {
      const float4* src = reinterpret_cast<const float4*>(p.partial + (i64(k) * p.tokens + m) * C::kModel + v * 8);
      const float4 a = src[0], b = src[1];
      s[0] += a.x, s[1] += a.y, s[2] += a.z, s[3] += a.w, s[4] += b.x, s[5] += b.y, s[6] += b.z, s[7] += b.w;
    }
    Vec8 o;
#pragma unroll
    for (int i = 0; i < 4; ++i) o.w[i] = pack_bf16x2(s[2 * i], s[2 * i + 1]);
    *reinterpret_cast<Vec8*>(p.out + i64(m) * C::kModel + v * 8) = o;
  }
}

}  // namespace ffnjit
