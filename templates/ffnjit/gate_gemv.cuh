// Decode gate: x·Wg^T for a few tokens (bm <= 64) with ReLU and TwELL packing fused.
// At decode the gate is a matrix-vector product bound by reading Wg (23 MB at d_model
// 2048, d_ff 5632), so what counts is bytes in flight on every SM, not MMA issue.
// A CTA owns one TwELL tile (tile_n neurons) for bm tokens; its warps split the
// neurons into 16-row groups and d_model into K slices. Each lane loads 16 bytes of
// a weight row straight into registers used as mma.sync A fragments: no shared
// memory, no cp.async pipeline, UNROLL loads of 1 KB per warp in flight.
//
// Why that is legal: mma m16n8k16 sums over k, so A and B may present k in any order
// as long as both use the same one. Lane (g, t) = (lane / 4, lane % 4) holds logical
// k {2t, 2t+1, 2t+8, 2t+9} of rows g and g + 8 (A) and of token g (B). Mapping them,
// per 32-wide chunk and mma step s, to physical k 8t + 4s + {0, 1, 2, 3} lets the lane
// read k [8t, 8t + 8) of a row with one 16-byte load: words 2s, 2s + 1 feed step s.
// The K-slice partials meet in shared memory and are summed in slice order, so the
// result is deterministic.
#pragma once

#include "ffnjit/common.cuh"
#include "ffnjit/twell.cuh"

namespace ffnjit {

template <int D_MODEL, int D_FF, int TILE_N, int CAP, int BM, int THREADS, int UNROLL>
struct GateGemvConfig {
  static constexpr int kModel = D_MODEL, kFF = D_FF, kTileN = TILE_N, kCap = CAP, kBM = BM;
  static constexpr int kThreads = THREADS, kWarps = THREADS / 32, kUnroll = UNROLL;
  static constexpr int kRowGroups = TILE_N / 16;           // 16 neurons per warp
  static constexpr int kKSplit = kWarps / kRowGroups;      // warps along d_model
  static constexpr int kChunks = (D_MODEL + 31) / 32;      // 32-wide k chunks
  static constexpr int kChunksPerWarp = (kChunks + kKSplit - 1) / kKSplit;
  static constexpr int kNB = BM / 8;                        // 8-token mma column blocks
  static constexpr int kEpiStride = TILE_N + 8;             // bf16 elements per token row
  // Decode column blocks prefetch the stored neurons' up/down rows (at 32 tokens and
  // more the epilogue's extra registers made ptxas spill, and the rows are bandwidth-bound).
  static constexpr bool kPrefetch = BM <= 16;
  static_assert(D_MODEL % 8 == 0 && D_FF % 8 == 0, "shapes must be multiples of 8");
  static_assert(kWarps % kRowGroups == 0 && kKSplit >= 1, "warps must be a multiple of tile_n / 16");
  static_assert(BM % 8 == 0 && BM <= 64, "bm must be a multiple of 8 up to 64");
};

// Shared memory: the K-slice partials [kKSplit][bm][tile_n] fp32, then the bf16 gate
// tile [bm][tile_n + 8] (KernelSpec::dynamic_smem_bytes).
template <class C>
__device__ void gate_gemv(const GatePackParams& p) {
  extern __shared__ __align__(16) unsigned char gate_gemv_smem[];
  float* red = reinterpret_cast<float*>(gate_gemv_smem);
  u16* sC = reinterpret_cast<u16*>(red + C::kKSplit * C::kBM * C::kTileN);
  __shared__ u32 n_stored;  // neurons the epilogue listed for prefetch
  if (threadIdx.x == 0) n_stored = 0;
  if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0 && p.tw.heavy) p.tw.heavy[0] = 0;
  grid_dependency_launch();
  const int tile = blockIdx.x, m0 = blockIdx.y * C::kBM, n0 = tile * C::kTileN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int rg = warp % C::kRowGroups, ks = warp / C::kRowGroups;
  const int row0 = n0 + rg * 16 + g, row1 = row0 + 8;
  const u16* w0 = p.w + i64(row0 < C::kFF ? row0 : 0) * C::kModel + 8 * t;
  const u16* w1 = p.w + i64(row1 < C::kFF ? row1 : 0) * C::kModel + 8 * t;
  const u16* xs[C::kNB];
  bool x_ok[C::kNB];
#pragma unroll
  for (int nb = 0; nb < C::kNB; ++nb) {
    const int m = m0 + nb * 8 + g;
    x_ok[nb] = m < p.tokens;
    xs[nb] = p.x + i64(x_ok[nb] ? m : 0) * C::kModel + 8 * t;
  }
  float acc[C::kNB][4];
#pragma unroll
  for (int nb = 0; nb < C::kNB; ++nb)
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[nb][q] = 0.0f;

  grid_dependency_wait();  // x comes from the stream's earlier work
  const int c_begin = ks * C::kChunksPerWarp;
  const int c_end = min(C::kChunks, c_begin + C::kChunksPerWarp);
  const Vec8 zero = {{0u, 0u, 0u, 0u}};
#pragma unroll 1
  for (int c0 = c_begin; c0 < c_end; c0 += C::kUnroll) {
    Vec8 a0[C::kUnroll], a1[C::kUnroll];
#pragma unroll
    for (int u = 0; u < C::kUnroll; ++u) {
      const int k = (c0 + u) * 32;
      const bool ok = c0 + u < c_end && k + 8 * t < C::kModel;
      a0[u] = ok && row0 < C::kFF ? ld_vec8_stream(w0 + k) : zero;
      a1[u] = ok && row1 < C::kFF ? ld_vec8_stream(w1 + k) : zero;
    }
#pragma unroll
    for (int u = 0; u < C::kUnroll; ++u) {
      const int k = (c0 + u) * 32;
      const bool ok = c0 + u < c_end && k + 8 * t < C::kModel;
#pragma unroll
      for (int nb = 0; nb < C::kNB; ++nb) {
        const Vec8 b = ok && x_ok[nb] ? ld_vec8(xs[nb] + k) : zero;
        const u32 lo[4] = {a0[u].w[0], a1[u].w[0], a0[u].w[1], a1[u].w[1]};
        const u32 hi[4] = {a0[u].w[2], a1[u].w[2], a0[u].w[3], a1[u].w[3]};
        mma_bf16_16816(acc[nb], lo, b.w[0], b.w[1]);
        mma_bf16_16816(acc[nb], hi, b.w[2], b.w[3]);
      }
    }
  }

  // Accumulator (row g or g + 8, token 2t or 2t + 1 of block nb) -> red[ks][token][neuron].
  float* mine = red + ks * C::kBM * C::kTileN;
#pragma unroll
  for (int nb = 0; nb < C::kNB; ++nb) {
    const int tok = nb * 8 + 2 * t, n = rg * 16 + g;
    mine[tok * C::kTileN + n] = acc[nb][0];
    mine[(tok + 1) * C::kTileN + n] = acc[nb][1];
    mine[tok * C::kTileN + n + 8] = acc[nb][2];
    mine[(tok + 1) * C::kTileN + n + 8] = acc[nb][3];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < C::kBM * C::kTileN; i += C::kThreads) {
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < C::kKSplit; ++k) s += red[k * C::kBM * C::kTileN + i];
    sC[(i / C::kTileN) * C::kEpiStride + i % C::kTileN] = f32_to_bf16(s);
  }
  __syncthreads();
  // Every stored neuron's Wu and WdT rows start towards L2 now (fire and forget), so
  // the up/down kernel behind finds them there instead of waiting on DRAM. The packer
  // lists the neurons in shared memory (over the partials, no longer needed); then
  // the whole CTA issues one prefetch per 128-byte line.
  u32* stored = reinterpret_cast<u32*>(red);
  pack_gate_tile<C::kTileN, C::kCap, C::kFF, C::kEpiStride, C::kThreads>(
      sC, C::kBM, m0, 1, tile, p.tw, p.tokens, [&](int j) {
        if (C::kPrefetch && p.prefetch_down_t) stored[atomicAdd(&n_stored, 1u)] = u32(j);
      });
  __syncthreads();
  spill_overflowed_rows<C::kTileN, C::kCap, C::kFF, C::kEpiStride, C::kThreads>(sC, C::kBM, m0, 1, tile, p.tw,
                                                                                p.tokens);
  if (!C::kPrefetch || !p.prefetch_down_t) return;
  constexpr int kLines = (C::kModel + 63) / 64;  // 128-byte lines per row
  for (int i = threadIdx.x; i < int(n_stored) * kLines; i += C::kThreads) {
    const i64 at = i64(stored[i / kLines]) * C::kModel + (i % kLines) * 64;
    prefetch_l2_weight(p.prefetch_down_t + at);
    if (p.prefetch_up) prefetch_l2_weight(p.prefetch_up + at);
  }
}

}  // namespace ffnjit
