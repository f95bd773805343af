// Serving counters: histograms of active neurons per token and per (token, tile),
// and per-neuron firing counts, from the TwELL a forward just wrote. One CTA per
// token; a (token, tile) over capacity counts fully in the histograms but only its
// stored entries in the neuron counts.
#pragma once

#include "ffnjit/common.cuh"

namespace ffnjit {

template <int D_FF, int TILE_N, int CAP, int THREADS>
struct StatsConfig {
  static constexpr int kFF = D_FF, kTileN = TILE_N, kCap = CAP, kThreads = THREADS;
  static constexpr int kTiles = (D_FF + TILE_N - 1) / TILE_N;
};

template <class C>
__device__ void sparsity_stats(const StatsParams& p) {
  __shared__ u32 warp_sums[C::kThreads / 32];
  const int m = blockIdx.x;
  u32 sum = 0;
  for (int t = threadIdx.x; t < C::kTiles; t += C::kThreads) {
    const i64 slot = i64(m) * C::kTiles + t;
    const u32 count = p.counts[slot];
    sum += count;
    atomicAdd(p.tile_hist + i64(t) * (C::kTileN + 1) + min(count, u32(C::kTileN)), 1ull);
    const u32 stored = min(count, u32(C::kCap));
    for (u32 e = 0; e < stored; ++e)
      atomicAdd(p.neuron_active + i64(t) * C::kTileN + (p.entries[slot * C::kCap + e] & 0xffffu), 1ull);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    u32 total = 0;
    for (int w = 0; w < C::kThreads / 32; ++w) total += warp_sums[w];
    atomicAdd(p.token_hist + min(total, u32(C::kFF)), 1ull);
  }
}

}  // namespace ffnjit
