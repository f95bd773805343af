// TwELL packing of a gate that a cuBLASLt GEMM already computed with its ReLU
// epilogue: one CTA per token, one warp per tile, the same packing as gate_pack's
// epilogue (so the two gate paths produce identical TwELL).
#pragma once

#include "ffnjit/twell.cuh"

namespace ffnjit {

template <int D_FF, int TILE_N, int CAP, int THREADS>
struct PackConfig {
  static constexpr int kFF = D_FF, kTileN = TILE_N, kCap = CAP, kThreads = THREADS, kWarps = THREADS / 32;
  static constexpr int kTiles = (D_FF + TILE_N - 1) / TILE_N;
  static constexpr int kV = TILE_N / 32 < 8 ? TILE_N / 32 : 8;  // bf16 values per lane and step
};

template <class C>
__device__ void pack_gate(const PackParams& p) {
  const int m = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  grid_dependency_launch();
  grid_dependency_wait();  // the GEMM's output
  const u16* row = p.g + i64(m) * C::kFF;
  u32 overflowed = 0, active = 0;
  for (int t = warp; t < C::kTiles; t += C::kWarps) {
    const i64 slot = i64(m) * C::kTiles + t;
    const u32 count = pack_tile_warp<C::kTileN, C::kCap, C::kV>(row + t * C::kTileN, t * C::kTileN, C::kFF,
                                                                p.tw.entries + slot * C::kCap, lane);
    if (lane == 0) p.tw.counts[slot] = count, overflowed += count > u32(C::kCap), active += count;
  }
  if (lane == 0 && overflowed) atomicAdd(p.tw.overflow, overflowed);
  if (lane == 0 && p.tw.forward_stats && active) {
    atomicAdd(p.tw.forward_stats, active);
    if (overflowed) atomicAdd(p.tw.forward_stats + 1, overflowed);
  }
  if (threadIdx.x == 0) p.tw.tickets[m] = 0;
  if (threadIdx.x == 0 && m == 0 && p.tw.heavy) p.tw.heavy[0] = 0;
  if (!p.tw.switch_handle) return;
  // The dense switch: the last CTA sees every CTA's counts and sets the conditional.
  __syncthreads();
  if (threadIdx.x != 0) return;
  __threadfence();
  if (atomicAdd(p.tw.forward_stats + 2, 1u) != gridDim.x - 1) return;
  __threadfence();
  const u32 pairs = atomicAdd(p.tw.forward_stats, 0u);
  cudaGraphSetConditional(p.tw.switch_handle, pairs > p.tw.switch_limit ? 1u : 0u);
  p.tw.forward_stats[0] = 0, p.tw.forward_stats[1] = 0, p.tw.forward_stats[2] = 0;
}

}  // namespace ffnjit
