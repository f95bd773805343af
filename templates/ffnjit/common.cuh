// ffnjit device library: bf16 helpers, cp.async, ldmatrix and mma.sync wrappers.
// Compiles under NVRTC (no system headers) and nvcc; sm_80 and later.
#pragma once

#include "ffnjit/params.h"

namespace ffnjit {

// bf16 stored as raw bits: avoids cuda_bf16.h, which costs NVRTC seconds per compile.
__device__ __forceinline__ float bf16_to_f32(u16 b) { return __uint_as_float(u32(b) << 16); }

__device__ __forceinline__ u16 f32_to_bf16(float f) {
  u16 r;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f));
  return r;
}

// Two floats to a packed bf16x2 (lo in the low half).
__device__ __forceinline__ u32 pack_bf16x2(float lo, float hi) {
  u32 r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

__device__ __forceinline__ float bf16_lo(u32 v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float bf16_hi(u32 v) { return __uint_as_float(v & 0xffff0000u); }

// A neuron is active unless its gate value is <= 0: NaN counts as active so that
// non-finite inputs propagate as in the dense computation.
__device__ __forceinline__ bool is_active(float v) { return !(v <= 0.0f); }

__device__ __forceinline__ u32 smem_addr(const void* p) {
  return static_cast<u32>(__cvta_generic_to_shared(p));
}

// 16-byte async copy global -> shared; bytes beyond src_bytes (0 or 16) are zero-filled.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(u32& r0, u32& r1, u32& r2, u32& r3, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(smem_addr(p)));
}

// D = A(16x16, row) * B(16x8, col) + D, bf16 inputs, fp32 accumulators.
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const u32 (&a)[4], u32 b0, u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The CUDA graph conditional of the dense switch (resolved by ptxas, no device runtime).
extern "C" __device__ void cudaGraphSetConditional(unsigned long long handle, unsigned int value);

__device__ __forceinline__ u32 warp_sum_u32(u32 v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// 16-byte vector of 8 bf16 values.
struct alignas(16) Vec8 {
  u32 w[4];
};

__device__ __forceinline__ Vec8 ld_vec8(const u16* p) { return *reinterpret_cast<const Vec8*>(p); }

// Weight-row loads of the gathers: no L1 allocation (a row is used once per CTA),
// and an L2 evict_last policy, so the rows many tokens gather stay in L2 while x,
// the TwELL and the outputs stream through (up_down at 8192 tokens: 550 -> 291 us
// on H100, docs/performance.md).
__device__ __forceinline__ Vec8 ld_vec8_weight(const u16* p) {
  Vec8 v;
  asm volatile(
      "{\n .reg .b64 pol;\n createpolicy.fractional.L2::evict_last.b64 pol, 1.0;\n"
      " ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0,%1,%2,%3}, [%4], pol;\n}\n"
      : "=r"(v.w[0]), "=r"(v.w[1]), "=r"(v.w[2]), "=r"(v.w[3])
      : "l"(p));
  return v;
}

// Streamed weight loads (the decode gate reads each Wg line once): no L1 allocation.
__device__ __forceinline__ Vec8 ld_vec8_stream(const u16* p) {
  Vec8 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.w[0]), "=r"(v.w[1]), "=r"(v.w[2]), "=r"(v.w[3])
               : "l"(p));
  return v;
}

// Programmatic dependent launch (sm_90): the runtime launches a forward's second and
// later kernels with the programmatic-serialization attribute (launch_dependent), so
// they start while their predecessor finishes. grid_dependency_launch() lets the
// next kernel start; grid_dependency_wait() blocks until the predecessor grid has
// completed and its writes are visible, so every read of a predecessor's output comes
// after it. Both are no-ops before sm_90 and on ordinary launches.
__device__ __forceinline__ void grid_dependency_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// Moves a weight line towards L2 ahead of its load, with the evict_last policy of
// ld_vec8_weight.
__device__ __forceinline__ void prefetch_l2_weight(const void* p) {
  asm volatile("prefetch.global.L2::evict_last [%0];\n" ::"l"(p));
}

// Thread-block clusters (sm_90): the CTA's rank in its cluster, the cluster-wide
// barrier in two halves (arrive with release, wait with acquire: shared-memory
// writes before arrive are visible to peers after wait), and a 16-byte load from a
// peer CTA's shared memory (distributed shared memory). Only kernels launched with
// clusters call them; before sm_90 they compile to nothing.
__device__ __forceinline__ u32 cluster_rank() {
  u32 r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
#endif
  return r;
}
__device__ __forceinline__ void cluster_arrive() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ float4 ld_peer_f32x4(const float* local, u32 rank) {
  float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  u32 peer;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(peer) : "r"(smem_addr(local)), "r"(rank));
  asm volatile("ld.shared::cluster.v4.f32 {%0,%1,%2,%3}, [%4];\n"
               : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
               : "r"(peer)
               : "memory");
#endif
  return v;
}

// The sum over the cluster's CTAs, in rank order (deterministic), of the 4 floats at
// `local`'s offset in each CTA's shared memory.
template <int SPLITS>
__device__ __forceinline__ float4 cluster_sum_f32x4(const float* local) {
  float4 s = ld_peer_f32x4(local, 0);
#pragma unroll
  for (int q = 1; q < SPLITS; ++q) {
    const float4 v = ld_peer_f32x4(local, u32(q));
    s.x += v.x, s.y += v.y, s.z += v.z, s.w += v.w;
  }
  return s;
}

__device__ __forceinline__ float dot8(const Vec8& a, const Vec8& b, float acc) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    acc = fmaf(bf16_lo(a.w[i]), bf16_lo(b.w[i]), acc);
    acc = fmaf(bf16_hi(a.w[i]), bf16_hi(b.w[i]), acc);
  }
  return acc;
}

}  // namespace ffnjit
