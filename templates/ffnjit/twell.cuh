// ffnjit's TwELL layout (docs/twell.md): per (token, tile) a count and `capacity`
// entries; an entry is bf16 value << 16 | neuron index within the tile.
#pragma once

#include "ffnjit/common.cuh"

namespace ffnjit {

__device__ __forceinline__ u32 twell_entry(u16 value_bf16, u32 local_index) {
  return (u32(value_bf16) << 16) | local_index;
}
__device__ __forceinline__ float twell_value(u32 e) { return __uint_as_float(e & 0xffff0000u); }
__device__ __forceinline__ u32 twell_index(u32 e) { return e & 0xffffu; }

// The load word for V bf16 values (V in 1, 2, 4, 8).
template <int V> struct Bf16Word;
template <> struct Bf16Word<1> { using T = u16; };
template <> struct Bf16Word<2> { using T = u32; };
template <> struct Bf16Word<4> { using T = uint2; };
template <> struct Bf16Word<8> { using T = uint4; };

// V consecutive bf16 values in one load (p aligned to 2 V bytes).
template <int V>
__device__ __forceinline__ void load_bf16s(u16 (&v)[V], const u16* p) {
  const typename Bf16Word<V>::T w = *reinterpret_cast<const typename Bf16Word<V>::T*>(p);
  const u16* h = reinterpret_cast<const u16*>(&w);
#pragma unroll
  for (int i = 0; i < V; ++i) v[i] = h[i];
}

// Callback of the packers for each stored entry (its neuron's index in d_ff): none.
struct NoStoredHook {
  __device__ void operator()(int) const {}
};

// One warp packs one (token, tile) from its bf16 gate values vals[0, TILE_N)
// (neurons n0 ..): ReLU, entries in neuron order up to CAP, and returns the count of
// active neurons (which may exceed CAP). Each lane takes V neighbours per step and
// calls stored(neuron) for each entry it writes.
template <int TILE_N, int CAP, int V, class Stored = NoStoredHook>
__device__ __forceinline__ u32 pack_tile_warp(const u16* vals, int n0, int d_ff, u32* entries, int lane,
                                              Stored stored = {}) {
  static_assert(TILE_N % (32 * V) == 0, "a warp step must divide the tile");
  u32 count = 0;
#pragma unroll
  for (int c0 = 0; c0 < TILE_N; c0 += 32 * V) {
    const int c = c0 + lane * V;
    u16 v[V];
    u32 bits = 0;
    int mine = 0;
    if (n0 + c < d_ff) {  // d_ff is a multiple of 8, so the whole vector is in range
      load_bf16s<V>(v, vals + c);
#pragma unroll
      for (int i = 0; i < V; ++i)
        if (is_active(bf16_to_f32(v[i]))) bits |= 1u << i, ++mine;
    }
    int incl = mine;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += y;
    }
    u32 pos = count + u32(incl - mine);
#pragma unroll
    for (int i = 0; i < V; ++i)
      if (bits >> i & 1u) {
        if (pos < u32(CAP)) entries[pos] = twell_entry(v[i], u32(c + i)), stored(n0 + c + i);
        ++pos;
      }
    count += u32(__shfl_sync(0xffffffffu, incl, 31));
  }
  return count;
}

// Epilogue of the gate kernels: the CTA's bf16 gate tile sC[rows][STRIDE] (row r is
// token m0 + r * m_step; neurons tile * TILE_N ..) becomes TwELL, one warp per token,
// in neuron order (deterministic). Counts overflowed pairs and, in tile 0, zeroes the
// token's split up_down ticket. stored(neuron) runs for each entry written.
template <int TILE_N, int CAP, int D_FF, int STRIDE, int THREADS, class Stored = NoStoredHook>
__device__ __forceinline__ void pack_gate_tile(const u16* sC, int rows, int m0, int m_step, int tile,
                                               const TwellBuffers& tw, int tokens, Stored stored = {}) {
  constexpr int kTiles = (D_FF + TILE_N - 1) / TILE_N;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  u32 overflowed = 0;
  for (int r = warp; r < rows; r += THREADS / 32) {
    const int m = m0 + r * m_step;
    if (m >= tokens) break;
    const i64 slot = i64(m) * kTiles + tile;
    const u32 count = pack_tile_warp<TILE_N, CAP, 1>(sC + r * STRIDE, tile * TILE_N, D_FF, tw.entries + slot * CAP, lane,
                                                      stored);
    if (lane == 0) {
      tw.counts[slot] = count;
      overflowed += count > u32(CAP);
      if (tile == 0) tw.tickets[m] = 0;
    }
  }
  if (lane == 0 && overflowed) atomicAdd(tw.overflow, overflowed);
}

// After pack_gate_tile (and a __syncthreads): every row of the gate tile whose count
// exceeded capacity is copied to tw.gate_spill, so the up/down backup path reads the
// values instead of recomputing them. A separate pass keeps the packer's registers free.
template <int TILE_N, int CAP, int D_FF, int STRIDE, int THREADS>
__device__ __forceinline__ void spill_overflowed_rows(const u16* sC, int rows, int m0, int m_step, int tile,
                                                      const TwellBuffers& tw, int tokens) {
  if (!tw.gate_spill) return;
  constexpr int kTiles = (D_FF + TILE_N - 1) / TILE_N, kVecs = TILE_N / 8;
  const int valid = min(TILE_N, D_FF - tile * TILE_N) / 8;
  for (int i = threadIdx.x; i < rows * kVecs; i += THREADS) {
    const int r = i / kVecs, v = i % kVecs, m = m0 + r * m_step;
    if (m >= tokens || v >= valid || tw.counts[i64(m) * kTiles + tile] <= u32(CAP)) continue;
    *reinterpret_cast<uint4*>(tw.gate_spill + i64(m) * D_FF + tile * TILE_N + v * 8) =
        *reinterpret_cast<const uint4*>(sC + r * STRIDE + v * 8);
  }
}

// Split-K gate across a thread-block cluster of SPLITS CTAs (sm_90a): every CTA holds
// its fp32 partial own[BM][TILE_N] in shared memory. This CTA sums, in rank order
// (deterministic), the partials of all CTAs for its token rows rank, rank + SPLITS, ...
// (of the rows_valid rows that are real tokens) into the bf16 tile sC (compacted: row i
// is token row rank + i * SPLITS) and returns how many rows it owns. Leaves the cluster
// barrier armed: call cluster_wait() before exit, so no CTA leaves while a peer reads it.
template <int BM, int TILE_N, int SPLITS, int THREADS, int STRIDE>
__device__ __forceinline__ int reduce_cluster_rows(const float* own, u16* sC, int rank, int rows_valid) {
  const int rows = rank < rows_valid ? (rows_valid - rank + SPLITS - 1) / SPLITS : 0;
  cluster_arrive();  // own[] is complete in every CTA of the cluster ...
  cluster_wait();    // ... and visible here
  constexpr int kQuads = TILE_N / 4;
  for (int i = threadIdx.x; i < rows * kQuads; i += THREADS) {
    const int lr = i / kQuads, n = (i % kQuads) * 4;
    const float4 s = cluster_sum_f32x4<SPLITS>(own + (rank + lr * SPLITS) * TILE_N + n);
    *reinterpret_cast<uint2*>(sC + lr * STRIDE + n) = make_uint2(pack_bf16x2(s.x, s.y), pack_bf16x2(s.z, s.w));
  }
  cluster_arrive();  // done reading the peers
  return rows;
}

}  // namespace ffnjit
