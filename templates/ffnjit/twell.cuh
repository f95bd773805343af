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

}  // namespace ffnjit
