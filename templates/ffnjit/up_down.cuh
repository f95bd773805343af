// Up and down projections from the packed gate. Active neurons: h = a * (x . Wu[j] + bu[j])
// (gated) or h = a (non-gated), a = act(z) as the TwELL stores it, then out += h * WdT[j]
// and out + bd is rounded once to bf16. A tile whose count exceeded capacity is
// recomputed exactly from the weights (the backup path: z, the activation, up), so
// overflow never loses a neuron. Three modes share the pieces below (docs/kernels.md):
//  - fused (up_down): one token per CTA, or per split of its tiles; h stays in shared
//    memory; the split CTAs of a token sum their fp32 partials in split order, through
//    distributed shared memory when they form a cluster (CLUSTER, sm_90a), else the
//    last CTA to arrive (a ticket per token) reads them from global memory;
//  - up: h for the stored entries, written back over the gate values in the TwELL;
//  - down: out from the TwELL's h, the output columns split over CTAs, so the
//    working set of each wave is a slice of WdT (L2-resident at large token counts).
#pragma once

#include "ffnjit/common.cuh"
#include "ffnjit/twell.cuh"

namespace ffnjit {

enum UpDownMode { kModeFused = 0, kModeUp = 1, kModeDown = 2 };

template <int D_MODEL, int D_FF, int TILE_N, int CAP, bool GATED, int THREADS, int SPLITS, int MODE,
          bool CLUSTER, int ACT, bool GATE_BIAS, bool UP_BIAS, bool DOWN_BIAS>
struct UpDownConfig {
  static constexpr int kModel = D_MODEL, kFF = D_FF, kTileN = TILE_N, kCap = CAP;
  static constexpr bool kGated = GATED, kCluster = CLUSTER;
  // The layer's math (UpDownParams biases): the backup path's activation and gate bias,
  // the up dots' bias (gated), the bias added in the final store.
  static constexpr int kAct = ACT;
  static constexpr bool kGateBias = GATE_BIAS, kUpBias = UP_BIAS, kDownBias = DOWN_BIAS;
  static constexpr int kThreads = THREADS, kSplits = SPLITS, kWarps = THREADS / 32, kMode = MODE;
  static constexpr int kTiles = (D_FF + TILE_N - 1) / TILE_N;
  // fused and up split a token's tiles over SPLITS CTAs; down splits its columns.
  static constexpr bool kColumnSplit = MODE == kModeDown;
  static constexpr int kTilesPerSplit = kColumnSplit ? kTiles : (kTiles + SPLITS - 1) / SPLITS;
  static constexpr int kVecs = D_MODEL / 8;                              // 16-byte vectors per row
  static constexpr int kSliceVecs = kColumnSplit ? kVecs / SPLITS : kVecs;  // vectors this CTA writes
  static constexpr int kVecsPerThread = (kSliceVecs + THREADS - 1) / THREADS;
  static constexpr int kListCap = kTilesPerSplit * CAP;
  static_assert(!kColumnSplit || kVecs % SPLITS == 0, "down splits must divide d_model / 8");
  static_assert(!CLUSTER || (MODE == kModeFused && SPLITS > 1 && SPLITS <= 8), "a cluster holds a token's splits");
  static_assert(!UP_BIAS || GATED, "only a gated layer's up projection is separate from its gate");
  // Weight rows in flight per thread in the down accumulation: 8 when a thread owns one
  // 8-column vector (decode: a few long dependent chains), else 4 (registers).
  static constexpr int kDownRows = kVecsPerThread == 1 ? 8 : 4;
  // Loads in flight per lane in an overflowed tile's up dots: the most that fit in 64
  // registers without spilling (ptxas; the nvrtc tier checks every variant).
  static constexpr int kBackupLoads = THREADS >= 256 && kVecsPerThread == 1 ? 4 : 2;
};

// x . w[row] for one warp, x in shared memory; every lane gets the sum. U loads in
// flight per lane (the rare backup path uses fewer, to stay within 64 registers).
template <class C, int U = 8>
__device__ __forceinline__ float warp_dot(const u16* sx, const u16* w_row, int lane) {
  constexpr int kSteps = (C::kVecs + 31) / 32;
  float acc = 0.0f;
#pragma unroll U
  for (int it = 0; it < kSteps; ++it) {
    const int v = lane + it * 32;
    if (kSteps * 32 == C::kVecs || v < C::kVecs) acc = dot8(ld_vec8(sx + v * 8), ld_vec8_weight(w_row + v * 8), acc);
  }
  return warp_sum(acc);
}

// acc += h[r] * WdT[idx[r]][slice] for R rows, all loads issued before the FMAs.
template <class C, int R, class Row, class H>
__device__ __forceinline__ void accumulate_rows(float (&acc)[C::kVecsPerThread][8], const u16* w_down_t, int vec0,
                                                Row idx, H h) {
#pragma unroll
  for (int v = 0; v < C::kVecsPerThread; ++v) {
    const int vec = threadIdx.x + v * C::kThreads;
    if (vec >= C::kSliceVecs) continue;
    Vec8 w[R];
#pragma unroll
    for (int r = 0; r < R; ++r) w[r] = ld_vec8_weight(w_down_t + i64(idx(r)) * C::kModel + (vec0 + vec) * 8);
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        acc[v][2 * i] = fmaf(h(r), bf16_lo(w[r].w[i]), acc[v][2 * i]);
        acc[v][2 * i + 1] = fmaf(h(r), bf16_hi(w[r].w[i]), acc[v][2 * i + 1]);
      }
  }
}

__device__ __forceinline__ void load_row(u16* sx, const u16* x, int vecs, int threads) {
  for (int v = threadIdx.x; v < vecs; v += threads) *reinterpret_cast<Vec8*>(sx + v * 8) = ld_vec8(x + v * 8);
}

// Shared-memory carve-up, identical for every mode (KernelSpec::dynamic_smem_bytes).
// Accessors rather than stored pointers keep ptxas on 32-bit shared addressing.
template <class C>
struct UpDownSmem {
  __device__ static unsigned char* base() {
    extern __shared__ __align__(16) unsigned char up_down_smem[];
    return up_down_smem;
  }
  // [d_model] the token's x
  __device__ static u16* x() { return reinterpret_cast<u16*>(base()); }
  // [list cap] hidden (or gate) values
  __device__ static float* h() { return reinterpret_cast<float*>(base() + C::kModel * 2); }
  // [list cap] neuron index (fused, down) or entry offset in the token (up)
  __device__ static u32* idx() { return reinterpret_cast<u32*>(h() + C::kListCap); }
  // [tile_n] an overflowed tile's active neurons: h, then their offsets in the tile
  __device__ static float* tile() { return reinterpret_cast<float*>(idx() + C::kListCap); }
  __device__ static u16* over_j() {
    __shared__ u16 j[C::kTileN];
    return j;
  }
  // [tiles per split + 2] list offsets, then the overflow flag
  __device__ static int* off() { return reinterpret_cast<int*>(tile() + C::kTileN); }
  // [d_model] fp32: the split's partial, read by its cluster (16-byte aligned)
  __device__ static float* partial() {
    const u32 end = u32(reinterpret_cast<unsigned char*>(off() + C::kTilesPerSplit + 2) - base());
    return reinterpret_cast<float*>(base() + ((end + 15) & ~15u));
  }
};

// The token's stored entries of tiles [t_begin, t_begin + n) as a list (h, idx),
// tiles over capacity left to the backup path. Returns the list length; sets
// off()[n + 1] when a tile overflowed. When every entry slot of the range fits in two
// per thread (decode splits), the slots are loaded before the counts are known, so
// the two reads overlap; slots beyond a tile's count hold stale words and are dropped.
//
// With `token_total`, warp 0 also sums all of the token's counts into it (the heavy-group
// decision, below), its loads issued next to the range's so both cost one round trip.
template <class C>
__device__ __forceinline__ int gather_entries(const UpDownParams& p, int m, int t_begin, int n,
                                              u32* token_total = nullptr) {
  using S = UpDownSmem<C>;
  constexpr int kSpec = (C::kListCap + C::kThreads - 1) / C::kThreads;
  constexpr bool kSpeculate = kSpec <= 2;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const u32* counts = p.counts + i64(m) * C::kTiles;
  const u32* slots = p.entries + (i64(m) * C::kTiles + t_begin) * C::kCap;  // n * kCap words
  u32 spec[kSpeculate ? kSpec : 1];
  if (kSpeculate)
#pragma unroll
    for (int q = 0; q < kSpec; ++q) {
      const int i = threadIdx.x + q * C::kThreads;
      spec[q] = i < n * C::kCap ? slots[i] : 0u;
    }
  if (warp == 0) {
    constexpr int kAll = (C::kTiles + 31) / 32;
    u32 all[kAll];
    if (token_total)
#pragma unroll
      for (int q = 0; q < kAll; ++q)
        all[q] = lane + q * 32 < C::kTiles ? counts[lane + q * 32] : 0u;
    int running = 0;
    bool over = false;
    for (int t0 = 0; t0 < n; t0 += 32) {
      const int t = t0 + lane;
      int c = 0;
      if (t < n) {
        const u32 cnt = counts[t_begin + t];
        over |= cnt > u32(C::kCap);
        c = cnt > u32(C::kCap) ? 0 : int(cnt);
      }
      int sum = c;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, sum, o);
        if (lane >= o) sum += y;
      }
      if (t < n) S::off()[t] = running + sum - c;
      running += __shfl_sync(0xffffffffu, sum, 31);
    }
    over = __any_sync(0xffffffffu, over);
    if (lane == 0) S::off()[n] = running, S::off()[n + 1] = over;
    if (token_total) {
      u32 sum = 0;
#pragma unroll
      for (int q = 0; q < kAll; ++q) sum += all[q];
      sum = warp_sum_u32(sum);
      if (lane == 0) *token_total = sum;
    }
  }
  __syncthreads();
  const auto place = [&](int i, u32 entry) {
    const int t = i / C::kCap, e = i % C::kCap;
    if (e < S::off()[t + 1] - S::off()[t]) {
      S::h()[S::off()[t] + e] = twell_value(entry);
      S::idx()[S::off()[t] + e] =
          C::kMode == kModeUp ? u32(t_begin + t) * C::kCap + e : u32(t_begin + t) * C::kTileN + twell_index(entry);
    }
  };
  if (kSpeculate) {
#pragma unroll
    for (int q = 0; q < kSpec; ++q) {
      const int i = threadIdx.x + q * C::kThreads;
      if (i < n * C::kCap) place(i, spec[q]);
    }
  } else {
    for (int i = threadIdx.x; i < n * C::kCap; i += C::kThreads) {
      const int t = i / C::kCap, e = i % C::kCap;
      if (e < S::off()[t + 1] - S::off()[t]) place(i, slots[i]);
    }
  }
  __syncthreads();
  return S::off()[n];
}

// h *= x . Wu[j] + bu[j] over the list (gated layers).
template <class C>
__device__ __forceinline__ void up_dots(const UpDownParams& p, int m, int total) {
  using S = UpDownSmem<C>;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int i = warp; i < total; i += C::kWarps) {
    u32 j = S::idx()[i];
    if (C::kMode == kModeUp) {
      const u32 entry = p.entries[i64(m) * C::kTiles * C::kCap + j];
      j = (j / C::kCap) * C::kTileN + twell_index(entry);
    }
    const float u = warp_dot<C>(S::x(), p.w_up + i64(j) * C::kModel, lane);
    if (lane == 0) S::h()[i] *= C::kUpBias ? u + bf16_to_f32(p.up_bias[j]) : u;
  }
  __syncthreads();
}

// The accumulators to (store) or from shared memory (partial(): free until the reduce).
// Each thread touches only its own words: no barrier needed.
template <class C>
__device__ __forceinline__ void park_acc(float (&acc)[C::kVecsPerThread][8], bool store) {
  float* park = UpDownSmem<C>::partial();
#pragma unroll
  for (int v = 0; v < C::kVecsPerThread; ++v) {
    const int vec = v * C::kThreads + threadIdx.x;
    if (vec >= C::kSliceVecs) continue;
    float4* q = reinterpret_cast<float4*>(park + vec * 8);
    if (store) {
      q[0] = make_float4(acc[v][0], acc[v][1], acc[v][2], acc[v][3]);
      q[1] = make_float4(acc[v][4], acc[v][5], acc[v][6], acc[v][7]);
    } else {
      const float4 a = q[0], b = q[1];
      acc[v][0] = a.x, acc[v][1] = a.y, acc[v][2] = a.z, acc[v][3] = a.w;
      acc[v][4] = b.x, acc[v][5] = b.y, acc[v][6] = b.z, acc[v][7] = b.w;
    }
  }
}

// Tile t of token m is over capacity: its active neurons in neuron order (as entries are
// stored) as tile()[i] = h, over_j()[i] = neuron offset in the tile. z (the gate's bf16
// pre-activation, bias included) and a = act(z) are rounded exactly as the gate kernels
// round them (docs/kernels.md); every z of the tile is read at once. Returns the count.
template <class C>
__device__ __forceinline__ int overflow_list(const UpDownParams& p, int m, int t) {
  using S = UpDownSmem<C>;
  constexpr int kChunks = (C::kTileN + 31) / 32;
  __shared__ u32 mask[kChunks];
  __shared__ float value[kChunks * 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const u16* gv = p.gate_values + i64(m) * C::kFF + t * C::kTileN;
  for (int c = warp; c < kChunks; c += C::kWarps) {
    const int jj = c * 32 + lane, j = t * C::kTileN + jj;
    bool active = false;
    if (jj < C::kTileN && j < C::kFF) {
      const u16 z = gv[jj];
      active = act_active<C::kAct>(bf16_to_f32(z), p.threshold);
      value[jj] = bf16_to_f32(act_value_bf16<C::kAct>(z));
    }
    const u32 bits = __ballot_sync(0xffffffffu, active);
    if (lane == 0) mask[c] = bits;
  }
  __syncthreads();
  int n = 0;
  for (int c = 0; c < kChunks; ++c) n += __popc(mask[c]);
  for (int c = warp; c < kChunks; c += C::kWarps) {
    int before = 0;
    for (int q = 0; q < c; ++q) before += __popc(mask[q]);
    if (mask[c] >> lane & 1u) {
      const int at = before + __popc(mask[c] & ((1u << lane) - 1u));
      S::tile()[at] = value[c * 32 + lane], S::over_j()[at] = u16(c * 32 + lane);
    }
  }
  __syncthreads();
  if (C::kGated) {  // h = a * (x . Wu[j] + bu[j]), one warp per neuron
    for (int i = warp; i < n; i += C::kWarps) {
      const int j = t * C::kTileN + S::over_j()[i];
      float u = warp_dot<C, C::kBackupLoads>(S::x(), p.w_up + i64(j) * C::kModel, lane);
      if (C::kUpBias) u += bf16_to_f32(p.up_bias[j]);
      if (lane == 0) S::tile()[i] *= u;
    }
    __syncthreads();
  }
  return n;
}

// acc += h * WdT over the list, then over every neuron of each overflowed tile.
template <class C>
__device__ __forceinline__ void down_rows(const UpDownParams& p, float (&acc)[C::kVecsPerThread][8],
                          int vec0, int total, int t_begin, int t_end, int m) {
  using S = UpDownSmem<C>;
#pragma unroll
  for (int v = 0; v < C::kVecsPerThread; ++v)
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[v][i] = 0.0f;

  // kDownRows rows per step keeps that many 16-byte loads in flight per thread.
  constexpr int R = C::kDownRows;
  int i = 0;
#pragma unroll 1
  for (; i + R <= total; i += R)
    accumulate_rows<C, R>(acc, p.w_down_t, vec0, [&](int r) { return S::idx()[i + r]; },
                          [&](int r) { return S::h()[i + r]; });
#pragma unroll 1
  for (; i < total; ++i)
    accumulate_rows<C, 1>(acc, p.w_down_t, vec0, [&](int) { return S::idx()[i]; }, [&](int) { return S::h()[i]; });

  if (!S::off()[t_end - t_begin + 1]) return;  // no tile over capacity (uniform)
  // Tiles over capacity, one at a time: their active neurons become a list (the gate
  // values give z: only active neurons cost a row read, as for stored entries), the up
  // dots run over it at full width, then the rows are accumulated. The accumulators wait
  // in shared memory while the dots run, so both keep their loads in flight within the
  // register budget (a heavy token's tiles are all over capacity).
  park_acc<C>(acc, /*store=*/true);
  const u32* counts = p.counts + i64(m) * C::kTiles;
  for (int t = t_begin; t < t_end; ++t) {
    if (counts[t] <= u32(C::kCap)) continue;  // uniform across the CTA
    const int n_over = overflow_list<C>(p, m, t);
    park_acc<C>(acc, /*store=*/false);
    const int row0 = t * C::kTileN;
    constexpr int R2 = R < 4 ? R : 4;  // 4 in flight: 8 made ptxas spill on the cluster kernels
    int q = 0;
#pragma unroll 1
    for (; q + R2 <= n_over; q += R2)
      accumulate_rows<C, R2>(
          acc, p.w_down_t, vec0, [&](int r) { return row0 + S::over_j()[q + r]; },
          [&](int r) { return S::tile()[q + r]; });
#pragma unroll 1
    for (; q < n_over; ++q)
      accumulate_rows<C, 1>(
          acc, p.w_down_t, vec0, [&](int) { return row0 + S::over_j()[q]; },
          [&](int) { return S::tile()[q]; });
    park_acc<C>(acc, /*store=*/true);
    __syncthreads();  // tile() and over_j() are rewritten by the next overflowed tile
  }
  park_acc<C>(acc, /*store=*/false);
}

__device__ __forceinline__ void store_bf16(u16* dst, const float (&a)[8]) {
  Vec8 o;
#pragma unroll
  for (int i = 0; i < 4; ++i) o.w[i] = pack_bf16x2(a[2 * i], a[2 * i + 1]);
  *reinterpret_cast<Vec8*>(dst) = o;
}

// The output's 8 columns vec * 8 .. of token m: a + bd (when the layer has a down bias),
// rounded once to bf16, as cuBLASLt's bias epilogue rounds the dense path's.
template <class C>
__device__ __forceinline__ void store_out(const UpDownParams& p, int m, int vec,
                                          const float (&a)[8]) {
  u16* dst = p.out + i64(m) * C::kModel + vec * 8;
  if (!C::kDownBias) return store_bf16(dst, a);
  const Vec8 b = ld_vec8(p.down_bias + vec * 8);
  float s[8];
#pragma unroll
  for (int i = 0; i < 4; ++i)
    s[2 * i] = a[2 * i] + bf16_lo(b.w[i]), s[2 * i + 1] = a[2 * i + 1] + bf16_hi(b.w[i]);
  store_bf16(dst, s);
}

// Split fused launch: publish this CTA's fp32 partial; the token's last CTA to
// arrive sums all partials in split order (deterministic) into the bf16 output.
template <class C>
__device__ __forceinline__ void reduce_splits(const UpDownParams& p, const float (&acc)[C::kVecsPerThread][8], int m, int split) {
  __shared__ int last;
#pragma unroll
  for (int v = 0; v < C::kVecsPerThread; ++v) {
    const int vec = threadIdx.x + v * C::kThreads;
    if (vec >= C::kVecs) continue;
    float4* dst = reinterpret_cast<float4*>(p.partial + (i64(split) * p.tokens + m) * C::kModel + vec * 8);
    __stcg(dst, make_float4(acc[v][0], acc[v][1], acc[v][2], acc[v][3]));
    __stcg(dst + 1, make_float4(acc[v][4], acc[v][5], acc[v][6], acc[v][7]));
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(p.tickets + m, 1u) == u32(C::kSplits - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int vec = threadIdx.x; vec < C::kVecs; vec += C::kThreads) {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int k = 0; k < C::kSplits; ++k) {
      const float4* src = reinterpret_cast<const float4*>(p.partial + (i64(k) * p.tokens + m) * C::kModel + vec * 8);
      const float4 a = __ldcg(src), b = __ldcg(src + 1);
      s[0] += a.x, s[1] += a.y, s[2] += a.z, s[3] += a.w, s[4] += b.x, s[5] += b.y, s[6] += b.z, s[7] += b.w;
    }
    store_out<C>(p, m, vec, s);
  }
  if (threadIdx.x == 0) p.tickets[m] = 0;  // ready for the next forward
}

// Cluster fused launch (the token's splits are one cluster): each CTA publishes its
// fp32 partial in shared memory; CTA r sums slice r of the columns over the cluster's
// partials in rank (= split) order, deterministic, and writes the bf16 output.
//
// group >= 0 (a heavy token spread over several clusters, below): the cluster's sums go
// to the fp32 partial of its group instead, and the token's last CTA to arrive sums the
// groups in order into the output.
template <class C>
__device__ __forceinline__ void reduce_cluster_splits(const UpDownParams& p,
                                                      const float (&acc)[C::kVecsPerThread][8],
                                                      int m, int group = -1) {
  float* part = UpDownSmem<C>::partial();
#pragma unroll
  for (int v = 0; v < C::kVecsPerThread; ++v) {
    const int vec = threadIdx.x + v * C::kThreads;
    if (vec >= C::kVecs) continue;
    float4* dst = reinterpret_cast<float4*>(part + vec * 8);
    dst[0] = make_float4(acc[v][0], acc[v][1], acc[v][2], acc[v][3]);
    dst[1] = make_float4(acc[v][4], acc[v][5], acc[v][6], acc[v][7]);
  }
  cluster_arrive();
  cluster_wait();
  const int rank = int(cluster_rank());
  const int v_begin = rank * C::kVecs / C::kSplits, v_end = (rank + 1) * C::kVecs / C::kSplits;
  for (int vec = v_begin + threadIdx.x; vec < v_end; vec += C::kThreads) {
    const float4 a = cluster_sum_f32x4<C::kSplits>(part + vec * 8), b = cluster_sum_f32x4<C::kSplits>(part + vec * 8 + 4);
    if (group >= 0) {
      float4* dst =
          reinterpret_cast<float4*>(p.partial + (i64(group) * p.tokens + m) * C::kModel + vec * 8);
      __stcg(dst, a), __stcg(dst + 1, b);
      continue;
    }
    const float s[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
    store_out<C>(p, m, vec, s);
  }
  cluster_arrive();  // peers may read this CTA's partial until every CTA is done
  cluster_wait();
  if (group < 0) return;
  __shared__ int last;
  __threadfence();
  __syncthreads();
  const int groups = int(gridDim.y) / C::kSplits;
  if (threadIdx.x == 0) last = atomicAdd(p.tickets + m, 1u) == u32(groups * C::kSplits - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int vec = threadIdx.x; vec < C::kVecs; vec += C::kThreads) {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll 8
    for (int g = 0; g < groups; ++g) {
      const float4* src = reinterpret_cast<const float4*>(
          p.partial + (i64(g) * p.tokens + m) * C::kModel + vec * 8);
      const float4 a = __ldcg(src), b = __ldcg(src + 1);
      s[0] += a.x, s[1] += a.y, s[2] += a.z, s[3] += a.w, s[4] += b.x, s[5] += b.y, s[6] += b.z,
          s[7] += b.w;
    }
    store_out<C>(p, m, vec, s);
  }
  if (threadIdx.x == 0) p.tickets[m] = 0;  // ready for the next forward
}

// Tiles [first, end) of split `s` of `splits` (the heavy pass's share of a token).
__device__ __forceinline__ void split_range(int n_tiles, int splits, int s, int& first, int& end) {
  const int per = (n_tiles + splits - 1) / splits;
  first = min(n_tiles, s * per), end = min(n_tiles, first + per);
}

// Active neurons of token m (warp 0 sums its counts; every thread gets the total).
template <class C>
__device__ __forceinline__ u32 token_active(const UpDownParams& p, int m) {
  __shared__ u32 total;
  if (threadIdx.x < 32) {
    u32 c = 0;
    for (int t = threadIdx.x; t < C::kTiles; t += 32) c += p.counts[i64(m) * C::kTiles + t];
    c = warp_sum_u32(c);
    if (threadIdx.x == 0) total = c;
  }
  __syncthreads();
  return total;
}

// The heavy pass's last CTA of a token sums the splits' partials in split order.
template <class C>
__device__ __forceinline__ void reduce_heavy(const UpDownParams& p, const float (&acc)[C::kVecsPerThread][8], int m,
                                             int slot, int split) {
  __shared__ int last;
#pragma unroll
  for (int v = 0; v < C::kVecsPerThread; ++v) {
    const int vec = threadIdx.x + v * C::kThreads;
    if (vec >= C::kVecs) continue;
    float4* dst = reinterpret_cast<float4*>(p.heavy_partial + (i64(split) * kHeavySlots + slot) * C::kModel + vec * 8);
    __stcg(dst, make_float4(acc[v][0], acc[v][1], acc[v][2], acc[v][3]));
    __stcg(dst + 1, make_float4(acc[v][4], acc[v][5], acc[v][6], acc[v][7]));
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(p.tickets + m, 1u) == u32(p.heavy_splits - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int vec = threadIdx.x; vec < C::kVecs; vec += C::kThreads) {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    // Up to 64 partials: 8 in flight per thread, summed in split order.
#pragma unroll 8
    for (int k = 0; k < p.heavy_splits; ++k) {
      const float4* src =
          reinterpret_cast<const float4*>(p.heavy_partial + (i64(k) * kHeavySlots + slot) * C::kModel + vec * 8);
      const float4 a = __ldcg(src), b = __ldcg(src + 1);
      s[0] += a.x, s[1] += a.y, s[2] += a.z, s[3] += a.w, s[4] += b.x, s[5] += b.y, s[6] += b.z, s[7] += b.w;
    }
    store_out<C>(p, m, vec, s);
  }
  if (threadIdx.x == 0) p.tickets[m] = 0;
}

template <class C>
__device__ void up_down(const UpDownParams& p) {
  using S = UpDownSmem<C>;
  // Heavy-token split: only the fused kernel with one CTA per token offers it, on sm_90
  // (at 64 registers the extra path spilled on sm_80/89, which keep heavy tokens unsplit).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr bool kHeavyable = C::kMode == kModeFused && C::kSplits == 1;
#else
  constexpr bool kHeavyable = false;
#endif
  const bool heavy_split = kHeavyable && p.heavy_splits > 1;
  int m = blockIdx.x;
  // Heavy groups (the fused up_down split over a cluster, sm_90a): the grid holds
  // gridDim.y / SPLITS clusters per token. A token with more than heavy_threshold active
  // neurons is spread over all of them (a decode token of 1000+ active neurons keeps 48
  // SMs busy instead of 8); for the others the first cluster does the work as without
  // groups and the rest return after reading the counts.
  constexpr bool kGroupable = C::kMode == kModeFused && C::kCluster;
  const int groups = kGroupable ? int(gridDim.y) / C::kSplits : 1;
  const int split = kGroupable ? int(blockIdx.y) % C::kSplits : int(blockIdx.y);
  int t_begin = C::kColumnSplit ? 0 : split * C::kTilesPerSplit;
  int t_end = min(C::kTiles, t_begin + C::kTilesPerSplit);
  grid_dependency_launch();
  // The heavy pass: CTA (slot, split) computes split `split` of the slot's heavy token
  // through the same code as the first pass (one copy keeps the registers in budget).
  const bool heavy_pass = kHeavyable && p.heavy_pass;
  if (heavy_pass) {
    grid_dependency_wait();
    if (blockIdx.x >= min(p.heavy[0], u32(kHeavySlots))) return;
    m = int(p.heavy[1 + blockIdx.x]);
    split_range(C::kTiles, p.heavy_splits, split, t_begin, t_end);
  }
  int n_here = max(0, t_end - t_begin);
  const int vec0 = C::kColumnSplit ? split * C::kSliceVecs : 0;
  // (The extra clusters of heavy groups load x only for a heavy token.)
  const bool extra_group = kGroupable && int(blockIdx.y) >= C::kSplits;
  if (C::kMode != kModeDown && !extra_group)
    load_row(S::x(), p.x + i64(m) * C::kModel, C::kVecs, C::kThreads);
  if (!heavy_pass) grid_dependency_wait();  // everything below reads what the previous kernels wrote
  // A heavy token goes to the heavy pass, while its slots last (later ones run here).
  if (heavy_split && !heavy_pass && token_active<C>(p, m) > u32(p.heavy_threshold)) {
    __shared__ u32 slot;
    if (threadIdx.x == 0) {
      slot = atomicAdd(p.heavy, 1u);
      if (slot < u32(kHeavySlots)) p.heavy[1 + slot] = u32(m);
    }
    __syncthreads();
    if (slot < u32(kHeavySlots)) return;  // the heavy pass computes it
  }
  __shared__ u32 token_total;
  int total = gather_entries<C>(p, m, t_begin, n_here, groups > 1 ? &token_total : nullptr);
  const bool grouped = groups > 1 && token_total > u32(p.heavy_threshold);
  if (grouped) {  // this CTA's share of the tiles over all groups, then its list again
    split_range(C::kTiles, groups * C::kSplits, int(blockIdx.y), t_begin, t_end);
    n_here = max(0, t_end - t_begin);
    if (extra_group) load_row(S::x(), p.x + i64(m) * C::kModel, C::kVecs, C::kThreads);
    __syncthreads();
    total = gather_entries<C>(p, m, t_begin, n_here);
  }
  if (extra_group && !grouped) return;                  // the whole cluster returns
  if (C::kMode == kModeDown && S::off()[n_here + 1]) {  // the backup path needs x
    load_row(S::x(), p.x + i64(m) * C::kModel, C::kVecs, C::kThreads);
    __syncthreads();
  }
  // Decode (split fused): start the down rows towards L2 while the up dots run.
  if (C::kMode == kModeFused && C::kSplits > 1)
    for (int i = threadIdx.x; i < total * (C::kModel / 64); i += C::kThreads)
      prefetch_l2_weight(p.w_down_t + i64(S::idx()[i / (C::kModel / 64)]) * C::kModel + (i % (C::kModel / 64)) * 64);
  if (C::kGated && C::kMode != kModeDown) up_dots<C>(p, m, total);

  if (C::kMode == kModeUp) {  // h over the gate values, same indices
    for (int i = threadIdx.x; i < total; i += C::kThreads) {
      u32* e = p.entries + i64(m) * C::kTiles * C::kCap + S::idx()[i];
      *e = twell_entry(f32_to_bf16(S::h()[i]), twell_index(*e));
    }
    return;
  }

  float acc[C::kVecsPerThread][8];
  down_rows<C>(p, acc, vec0, total, t_begin, t_end, m);

  if (heavy_pass) return reduce_heavy<C>(p, acc, m, int(blockIdx.x), split);
  if (C::kMode == kModeFused &&
      C::kCluster)  // (grouped again from shared memory: one register less)
    return reduce_cluster_splits<C>(
        p, acc, m,
        groups > 1 && token_total > u32(p.heavy_threshold) ? int(blockIdx.y) / C::kSplits : -1);
  if (C::kMode == kModeFused && C::kSplits > 1) return reduce_splits<C>(p, acc, m, split);
#pragma unroll
  for (int v = 0; v < C::kVecsPerThread; ++v) {
    const int vec = threadIdx.x + v * C::kThreads;
    if (vec < C::kSliceVecs) store_out<C>(p, m, vec0 + vec, acc[v]);
  }
}

}  // namespace ffnjit
