// Up and down projections from the packed gate, one token per CTA (or per split of
// its tiles). Active neurons: h = g * (x . Wu[j]) (gated) or h = g (non-gated), then
// out += h * WdT[j]. A tile whose count exceeded capacity is recomputed exactly from
// the weights (the backup path), so overflow never loses a neuron. The hidden
// activation stays in shared memory.
#pragma once

#include "ffnjit/common.cuh"
#include "ffnjit/twell.cuh"

namespace ffnjit {

template <int D_MODEL, int D_FF, int TILE_N, int CAP, bool GATED, int THREADS, int SPLITS>
struct UpDownConfig {
  static constexpr int kModel = D_MODEL, kFF = D_FF, kTileN = TILE_N, kCap = CAP;
  static constexpr bool kGated = GATED;
  static constexpr int kThreads = THREADS, kSplits = SPLITS, kWarps = THREADS / 32;
  static constexpr int kTiles = (D_FF + TILE_N - 1) / TILE_N;
  static constexpr int kTilesPerSplit = (kTiles + SPLITS - 1) / SPLITS;
  static constexpr int kVecs = D_MODEL / 8;                          // 16-byte vectors per row
  static constexpr int kVecsPerThread = (kVecs + THREADS - 1) / THREADS;
  static constexpr int kListCap = kTilesPerSplit * CAP;
};

// x . w[row] for one warp, x in shared memory; every lane gets the sum.
template <class C>
__device__ __forceinline__ float warp_dot(const u16* sx, const u16* w_row, int lane) {
  constexpr int kSteps = (C::kVecs + 31) / 32;
  float acc = 0.0f;
#pragma unroll 8
  for (int it = 0; it < kSteps; ++it) {
    const int v = lane + it * 32;
    if (kSteps * 32 == C::kVecs || v < C::kVecs) acc = dot8(ld_vec8(sx + v * 8), ld_vec8_stream(w_row + v * 8), acc);
  }
  return warp_sum(acc);
}

// acc += h[r] * WdT[idx[r]] for R rows, all loads issued before the FMAs.
template <class C, int R, class Row, class H>
__device__ __forceinline__ void accumulate_rows(float (&acc)[C::kVecsPerThread][8], const u16* w_down_t, Row idx,
                                                H h) {
#pragma unroll
  for (int v = 0; v < C::kVecsPerThread; ++v) {
    const int vec = threadIdx.x + v * C::kThreads;
    if (vec >= C::kVecs) continue;
    Vec8 w[R];
#pragma unroll
    for (int r = 0; r < R; ++r) w[r] = ld_vec8_stream(w_down_t + i64(idx(r)) * C::kModel + vec * 8);
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        acc[v][2 * i] = fmaf(h(r), bf16_lo(w[r].w[i]), acc[v][2 * i]);
        acc[v][2 * i + 1] = fmaf(h(r), bf16_hi(w[r].w[i]), acc[v][2 * i + 1]);
      }
  }
}

template <class C>
__device__ void up_down(const UpDownParams& p) {
  extern __shared__ __align__(16) unsigned char smem[];
  u16* sx = reinterpret_cast<u16*>(smem);                        // [d_model]
  float* sh = reinterpret_cast<float*>(smem + C::kModel * 2);      // [list cap] hidden values
  u32* sidx = reinterpret_cast<u32*>(sh + C::kListCap);            // [list cap] neuron indices
  float* so = reinterpret_cast<float*>(sidx + C::kListCap);        // [tile_n] overflow tile's h
  int* soff = reinterpret_cast<int*>(so + C::kTileN);              // [tiles per split + 1]

  const int m = blockIdx.x, split = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int t_begin = split * C::kTilesPerSplit;
  const int t_end = min(C::kTiles, t_begin + C::kTilesPerSplit);
  const int n_here = max(0, t_end - t_begin);
  const u32* counts = p.counts + i64(m) * C::kTiles;

  for (int v = threadIdx.x; v < C::kVecs; v += C::kThreads)
    *reinterpret_cast<Vec8*>(sx + v * 8) = ld_vec8(p.x + i64(m) * C::kModel + v * 8);

  // Offsets of each tile's entries in the list; overflowed tiles take the backup path.
  if (warp == 0) {
    int running = 0;
    for (int t0 = 0; t0 < n_here; t0 += 32) {
      const int t = t0 + lane;
      int c = 0;
      if (t < n_here) {
        const u32 cnt = counts[t_begin + t];
        c = cnt > u32(C::kCap) ? 0 : int(cnt);
      }
      int s = c;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, s, o);
        if (lane >= o) s += y;
      }
      if (t < n_here) soff[t] = running + s - c;
      running += __shfl_sync(0xffffffffu, s, 31);
    }
    if (lane == 0) soff[n_here] = running;
  }
  __syncthreads();

  const int total = soff[n_here];
  for (int i = threadIdx.x; i < n_here * C::kCap; i += C::kThreads) {
    const int t = i / C::kCap, e = i % C::kCap;
    if (e < soff[t + 1] - soff[t]) {
      const u32 entry = p.entries[(i64(m) * C::kTiles + t_begin + t) * C::kCap + e];
      sh[soff[t] + e] = twell_value(entry);
      sidx[soff[t] + e] = u32(t_begin + t) * C::kTileN + twell_index(entry);
    }
  }
  __syncthreads();

  if (C::kGated) {
    for (int i = warp; i < total; i += C::kWarps) {
      const float u = warp_dot<C>(sx, p.w_up + i64(sidx[i]) * C::kModel, lane);
      if (lane == 0) sh[i] *= u;
    }
    __syncthreads();
  }

  float acc[C::kVecsPerThread][8];
#pragma unroll
  for (int v = 0; v < C::kVecsPerThread; ++v)
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[v][i] = 0.0f;

  // Four rows per step keeps four 16-byte loads in flight per thread.
  int i = 0;
#pragma unroll 1
  for (; i + 4 <= total; i += 4)
    accumulate_rows<C, 4>(acc, p.w_down_t, [&](int r) { return sidx[i + r]; }, [&](int r) { return sh[i + r]; });
#pragma unroll 1
  for (; i < total; ++i)
    accumulate_rows<C, 1>(acc, p.w_down_t, [&](int) { return sidx[i]; }, [&](int) { return sh[i]; });

  // Backup path: recompute every neuron of an overflowed tile from the weights.
  for (int t = t_begin; t < t_end; ++t) {
    if (counts[t] <= u32(C::kCap)) continue;  // uniform across the CTA
    for (int jj = warp; jj < C::kTileN; jj += C::kWarps) {
      const int j = t * C::kTileN + jj;
      float h = 0.0f;
      if (j < C::kFF) {
        const float g = bf16_to_f32(f32_to_bf16(warp_dot<C>(sx, p.w_gate + i64(j) * C::kModel, lane)));
        if (is_active(g)) h = C::kGated ? g * warp_dot<C>(sx, p.w_up + i64(j) * C::kModel, lane) : g;
      }
      if (lane == 0) so[jj] = h;
    }
    __syncthreads();
#pragma unroll 1  // unrolling this rare path made ptxas spill
    for (int jj = 0; jj < C::kTileN; ++jj) {
      const float h = so[jj];
      if (h != 0.0f)
        accumulate_rows<C, 1>(acc, p.w_down_t, [&](int) { return t * C::kTileN + jj; }, [&](int) { return h; });
    }
    __syncthreads();  // so[] is rewritten by the next overflowed tile
  }

#pragma unroll
  for (int v = 0; v < C::kVecsPerThread; ++v) {
    const int vec = threadIdx.x + v * C::kThreads;
    if (vec >= C::kVecs) continue;
    if (C::kSplits == 1) {
      Vec8 o;
#pragma unroll
      for (int i = 0; i < 4; ++i) o.w[i] = pack_bf16x2(acc[v][2 * i], acc[v][2 * i + 1]);
      *reinterpret_cast<Vec8*>(p.out + i64(m) * C::kModel + vec * 8) = o;
    } else {
      float4* dst = reinterpret_cast<float4*>(p.partial + (i64(split) * p.tokens + m) * C::kModel + vec * 8);
      dst[0] = make_float4(acc[v][0], acc[v][1], acc[v][2], acc[v][3]);
      dst[1] = make_float4(acc[v][4], acc[v][5], acc[v][6], acc[v][7]);
    }
  }
}

}  // namespace ffnjit
