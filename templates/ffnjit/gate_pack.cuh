// Gate projection on tensor cores (mma.sync m16n8k16, cp.async pipeline) with ReLU
// and TwELL packing fused into the epilogue. One CTA owns a bm x tile_n tile, so a
// (token, tile) pair is packed by exactly one warp, in neuron order: deterministic.
//
// SPLITS > 1 (sm_90a): a thread-block cluster of SPLITS CTAs shares the tile, each
// CTA a contiguous share of d_model's k-tiles. At a few dozen tokens the grid is only
// n_tiles wide and each CTA's K loop is a chain of dependent loads; splitting K over a
// cluster shortens the chain SPLITS times and fills the SMs. The fp32 partials meet
// through distributed shared memory (reduce_cluster_rows: rank order, deterministic).
#pragma once

#include "ffnjit/common.cuh"
#include "ffnjit/twell.cuh"

namespace ffnjit {

template <int D_MODEL, int D_FF, int TILE_N, int CAP, int BM, int BK, int WARPS_M, int WARPS_N, int STAGES,
          int SPLITS>
struct GatePackConfig {
  static constexpr int kModel = D_MODEL, kFF = D_FF, kBN = TILE_N, kCap = CAP, kBM = BM, kBK = BK;
  static constexpr int kWarpsM = WARPS_M, kWarpsN = WARPS_N, kStages = STAGES, kSplits = SPLITS;
  static constexpr int kThreads = 32 * WARPS_M * WARPS_N;
  static constexpr int kChunks = BK / 8;  // 16-byte chunks per smem row
  static constexpr int kWTM = BM / WARPS_M, kWTN = TILE_N / WARPS_N;
  static constexpr int kMI = kWTM / 16, kNI = kWTN / 8;
  static constexpr int kKT = (D_MODEL + BK - 1) / BK;
  static constexpr int kKTPerSplit = (kKT + SPLITS - 1) / SPLITS;  // k-tiles per CTA of a cluster
  static constexpr int kEpiStride = TILE_N + 8;  // bf16 elements; padding avoids bank conflicts
  static_assert(D_MODEL % 8 == 0 && D_FF % 8 == 0, "shapes must be multiples of 8");
  static_assert(kWTM % 16 == 0 && kWTN % 16 == 0, "warp tile must be a multiple of 16x16");
};

// XOR swizzle of 16-byte chunks so the 8 rows an ldmatrix reads hit distinct banks.
template <int CHUNKS>
__device__ __forceinline__ int swizzle(int row, int chunk) {
  return chunk ^ ((row / (8 / CHUNKS)) % CHUNKS);
}

template <class C>
__device__ __forceinline__ void gate_pack_load_stage(const GatePackParams& p, u16* sA, u16* sB, int m0,
                                                     int n0, int kt) {
  const int k0 = kt * C::kBK;
  for (int i = threadIdx.x; i < C::kBM * C::kChunks; i += C::kThreads) {
    const int r = i / C::kChunks, c = i % C::kChunks, m = m0 + r, k = k0 + c * 8;
    const bool valid = m < p.tokens && k < C::kModel;
    cp_async_16(sA + r * C::kBK + swizzle<C::kChunks>(r, c) * 8, p.x + (valid ? i64(m) * C::kModel + k : 0),
                valid);
  }
  for (int i = threadIdx.x; i < C::kBN * C::kChunks; i += C::kThreads) {
    const int r = i / C::kChunks, c = i % C::kChunks, n = n0 + r, k = k0 + c * 8;
    const bool valid = n < C::kFF && k < C::kModel;
    cp_async_16(sB + r * C::kBK + swizzle<C::kChunks>(r, c) * 8, p.w + (valid ? i64(n) * C::kModel + k : 0),
                valid);
  }
}

// SPLITS > 1: accumulators -> this CTA's fp32 partial [bm][tile_n] in shared memory,
// the cluster's sum for this CTA's token rows -> bf16 tile behind it, then packing.
template <class C>
__device__ __forceinline__ void gate_pack_cluster_epilogue(const GatePackParams& p,
                                                           const float (&acc)[C::kMI][C::kNI][4],
                                                           unsigned char* smem, int m0, int tile, int rank) {
  float* own = reinterpret_cast<float*>(smem);                     // [bm][tile_n]
  u16* sC = reinterpret_cast<u16*>(own + C::kBM * C::kBN);       // [bm / splits][tile_n + 8]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = warp / C::kWarpsN, wn = warp % C::kWarpsN;
#pragma unroll
  for (int mi = 0; mi < C::kMI; ++mi)
#pragma unroll
    for (int ni = 0; ni < C::kNI; ++ni) {
      const int row = wm * C::kWTM + mi * 16 + lane / 4, col = wn * C::kWTN + ni * 8 + (lane % 4) * 2;
      *reinterpret_cast<float2*>(own + row * C::kBN + col) = make_float2(acc[mi][ni][0], acc[mi][ni][1]);
      *reinterpret_cast<float2*>(own + (row + 8) * C::kBN + col) = make_float2(acc[mi][ni][2], acc[mi][ni][3]);
    }
  const int rows = reduce_cluster_rows<C::kBM, C::kBN, C::kSplits, C::kThreads, C::kEpiStride>(
      own, sC, rank, min(C::kBM, p.tokens - m0));
  __syncthreads();
  pack_gate_tile<C::kBN, C::kCap, C::kFF, C::kEpiStride, C::kThreads>(sC, rows, m0 + rank, C::kSplits, tile, p.tw,
                                                                      p.tokens);
  __syncthreads();
  spill_overflowed_rows<C::kBN, C::kCap, C::kFF, C::kEpiStride, C::kThreads>(sC, rows, m0 + rank, C::kSplits, tile,
                                                                             p.tw, p.tokens);
  cluster_wait();  // peers may read `own` until every CTA of the cluster is done
}

template <class C>
__device__ void gate_pack(const GatePackParams& p) {
  extern __shared__ __align__(128) unsigned char smem[];
  u16* sA = reinterpret_cast<u16*>(smem);   // [stages][bm][bk]
  u16* sB = sA + C::kStages * C::kBM * C::kBK;  // [stages][tile_n][bk]
  const int tile = blockIdx.x / C::kSplits;
  const int m0 = blockIdx.y * C::kBM, n0 = tile * C::kBN;
  const int rank = C::kSplits > 1 ? int(cluster_rank()) : 0;
  const int kt0 = rank * C::kKTPerSplit, n_kt = max(0, min(C::kKT, kt0 + C::kKTPerSplit) - kt0);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = warp / C::kWarpsN, wn = warp % C::kWarpsN;
  grid_dependency_launch();
  if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0 && p.tw.heavy) p.tw.heavy[0] = 0;
  grid_dependency_wait();  // x comes from the stream's earlier work

  float acc[C::kMI][C::kNI][4];
#pragma unroll
  for (int mi = 0; mi < C::kMI; ++mi)
#pragma unroll
    for (int ni = 0; ni < C::kNI; ++ni)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[mi][ni][q] = 0.0f;

  // kt counts this CTA's k-tiles (kt0 + kt is the k-tile of d_model).
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    if (s < n_kt)
      gate_pack_load_stage<C>(p, sA + s * C::kBM * C::kBK, sB + s * C::kBN * C::kBK, m0, n0, kt0 + s);
    cp_async_commit();
  }

  for (int kt = 0; kt < n_kt; ++kt) {
    cp_async_wait<C::kStages - 2>();
    __syncthreads();  // stage kt landed for all threads; stage kt-1 is free to refill
    const int nk = kt + C::kStages - 1;
    if (nk < n_kt) {
      const int s = nk % C::kStages;
      gate_pack_load_stage<C>(p, sA + s * C::kBM * C::kBK, sB + s * C::kBN * C::kBK, m0, n0, kt0 + nk);
    }
    cp_async_commit();
    const u16* a = sA + (kt % C::kStages) * C::kBM * C::kBK;
    const u16* b = sB + (kt % C::kStages) * C::kBN * C::kBK;
#pragma unroll
    for (int kk = 0; kk < C::kBK / 16; ++kk) {
      u32 af[C::kMI][4], bf[C::kNI][2];
#pragma unroll
      for (int mi = 0; mi < C::kMI; ++mi) {
        const int row = wm * C::kWTM + mi * 16 + (lane & 15), chunk = kk * 2 + (lane >> 4);
        ldmatrix_x4(af[mi][0], af[mi][1], af[mi][2], af[mi][3],
                    a + row * C::kBK + swizzle<C::kChunks>(row, chunk) * 8);
      }
#pragma unroll
      for (int ni = 0; ni < C::kNI; ni += 2) {
        const int row = wn * C::kWTN + ni * 8 + (lane & 7) + ((lane >> 4) << 3);
        const int chunk = kk * 2 + ((lane >> 3) & 1);
        ldmatrix_x4(bf[ni][0], bf[ni][1], bf[ni + 1][0], bf[ni + 1][1],
                    b + row * C::kBK + swizzle<C::kChunks>(row, chunk) * 8);
      }
#pragma unroll
      for (int mi = 0; mi < C::kMI; ++mi)
#pragma unroll
        for (int ni = 0; ni < C::kNI; ++ni) mma_bf16_16816(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // pipeline smem is reused for the epilogue tile

  if (C::kSplits > 1) return gate_pack_cluster_epilogue<C>(p, acc, smem, m0, tile, rank);

  // Epilogue 1: accumulators -> bf16 tile in smem (the gate values the dense path would store).
  u16* sC = reinterpret_cast<u16*>(smem);  // [bm][tile_n + 8]
#pragma unroll
  for (int mi = 0; mi < C::kMI; ++mi)
#pragma unroll
    for (int ni = 0; ni < C::kNI; ++ni) {
      const int row = wm * C::kWTM + mi * 16 + lane / 4, col = wn * C::kWTN + ni * 8 + (lane % 4) * 2;
      *reinterpret_cast<u32*>(sC + row * C::kEpiStride + col) = pack_bf16x2(acc[mi][ni][0], acc[mi][ni][1]);
      *reinterpret_cast<u32*>(sC + (row + 8) * C::kEpiStride + col) =
          pack_bf16x2(acc[mi][ni][2], acc[mi][ni][3]);
    }
  __syncthreads();

  // Epilogue 2: ReLU and TwELL packing, one warp per token.
  pack_gate_tile<C::kBN, C::kCap, C::kFF, C::kEpiStride, C::kThreads>(sC, C::kBM, m0, 1, tile, p.tw, p.tokens);
  __syncthreads();
  spill_overflowed_rows<C::kBN, C::kCap, C::kFF, C::kEpiStride, C::kThreads>(sC, C::kBM, m0, 1, tile, p.tw, p.tokens);
}

}  // namespace ffnjit
