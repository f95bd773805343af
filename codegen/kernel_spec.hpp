// KernelSpec: everything that determines one generated kernel, validated and named.
#pragma once

#include <string>

#include "support/status.hpp"

namespace ffnjit {

// What the generated kernel computes (design.md section 5).
enum class Family {
  kGatePack,  // x·Wg^T (or x·Wu^T non-gated) on tensor cores, ReLU, TwELL packing fused
  kGateGemv,  // decode gate: Wg streamed by every warp into mma fragments, ReLU, TwELL packing fused
  kPack,      // TwELL packing of a gate a cuBLASLt GEMM (ReLU epilogue) computed
  kUpDown,    // from the packed gate: h = g ⊙ (x·Wu^T) on active neurons, out = h·Wd^T; exact overflow
  kUp,        // the up half alone: h = g ⊙ (x·Wu^T) written over the TwELL's gate values
  kDown,      // the down half alone: out = h·Wd^T from the TwELL, output columns split over CTAs
  kTranspose, // Wd -> WdT once at layer registration (shape-independent)
  kDenseAct,  // dense baseline/fallback: h = relu(g) * u between two cuBLASLt GEMMs
  kStats,     // serving counters from a forward's TwELL (histograms, neuron firing counts)
};

enum class DType { kBF16 };

// Real targets only: NVRTC emits a cubin for these (no PTX JIT at load).
enum class Arch { kSm80, kSm89, kSm90a };

const char* family_name(Family f);  // "gate_pack"
const char* dtype_name(DType d);    // "bf16"
const char* arch_name(Arch a);      // "sm_90a"
Expected<Family> parse_family(const std::string& s);
Expected<Arch> parse_arch(const std::string& s);  // accepts sm_90a, sm90a, 90a

// The FFN's activation of the gate pre-activation z (gated: z = x.Wg_j + bg_j; non-gated:
// z = x.Wu_j + bu_j). Each is exactly 0 for an inactive neuron, which the sparse kernels
// skip: active iff z > 0 (relu, relu2) or z > threshold (fatrelu), NaN active
// (docs/kernels.md). The fatrelu threshold is a runtime value, not part of the spec.
enum class Activation {
  kRelu,     // max(z, 0)
  kRelu2,    // max(z, 0)^2 (squared ReLU)
  kFatRelu,  // z if z > threshold, else 0
};
const char* activation_name(Activation a);  // "relu", "relu2", "fatrelu"
Expected<Activation> parse_activation(const std::string& s);

// The layer problem. Shapes follow Hugging Face: Wg, Wu [d_ff, d_model], Wd [d_model, d_ff].
// The bias flags say which of gate_proj.bias (gated only), up_proj.bias / fc1.bias and
// down_proj.bias / fc2.bias the layer has; a kernel's code depends only on those its
// family reads (KernelSpec::gate_bias() ...).
struct LayerShape {
  int d_model = 0;
  int d_ff = 0;
  bool gated = true;
  DType dtype = DType::kBF16;
  Activation activation = Activation::kRelu;
  bool gate_bias = false;
  bool up_bias = false;
  bool down_bias = false;
};

// TwELL parameters: neurons per tile and entries stored per (token, tile).
struct Sparsity {
  int tile_n = 128;
  int capacity = 31;
};

// Inclusive range of token counts this kernel is specialized for.
struct BatchBucket {
  int min_tokens = 1;
  int max_tokens = 1 << 30;
};

// Tile configuration; the fields a family ignores must stay at their defaults.
struct TileConfig {
  // gate_pack: CTA tile bm x tile_n (bn = Sparsity::tile_n) x bk, warps_m x warps_n warps,
  // and `splits` CTAs per tile (a thread-block cluster splitting d_model, sm_90a).
  // gate_gemv: bm tokens (a multiple of 8 up to 64) per CTA, `threads`, and `stages` 1 KB weight
  // loads in flight per warp (its K-loop unroll).
  int bm = 128;
  int bk = 32;
  int warps_m = 2;
  int warps_n = 4;
  int stages = 3;
  // up_down, up, down, pack: threads per CTA; up_down and up: CTAs per token (its
  // tiles split between them); down: CTAs per token (its output columns split).
  int threads = 256;
  int splits = 1;
  // All families: CTAs per SM promised to ptxas (__launch_bounds__ second argument).
  int min_blocks = 1;
};

struct KernelSpec {
  Family family = Family::kGatePack;
  LayerShape layer;
  Arch arch = Arch::kSm90a;
  Sparsity sparsity;
  BatchBucket bucket;
  TileConfig tile;

  // Checks every constraint the templates rely on; the message names the fix.
  Status validate() const;
  // Procedural, unique name: symbol, cache column, log label, CLI filter.
  std::string kernel_name() const;
  // Canonical text form: the hash input, stable across versions of the struct layout.
  std::string canonical() const;
  // Threads per CTA and dynamic shared memory (bytes) the kernel is launched with.
  int block_threads() const;
  int dynamic_smem_bytes() const;
  int n_tiles() const { return (layer.d_ff + sparsity.tile_n - 1) / sparsity.tile_n; }
  // The parts of the layer's math this family's code depends on (name, canonical text and
  // template values use only these, so e.g. the pack kernel of a biased layer is the same
  // kernel as an unbiased one's). activation(): gate_pack, gate_gemv, pack, up_down, down,
  // dense_act (relu for the others). gate_bias(): the bias of the gate projection these
  // kernels compute (Wg's when gated, Wu's when not): gate_pack, gate_gemv, up_down, down.
  // up_bias(): Wu's bias of a gated layer: up_down, up, down. down_bias(): up_down, down.
  Activation activation() const;
  bool gate_bias() const;
  bool up_bias() const;
  bool down_bias() const;
  // CTAs per thread-block cluster (1: no cluster): gate_pack's splits of d_model, and
  // the fused up_down's splits of a token's tiles when they fit one cluster (sm_90a,
  // <= 8), which then reduce through distributed shared memory instead of global tickets.
  int cluster_size() const;
};

// The default spec for a family and problem: the heuristic config the runtime
// can always launch before any tuning (documented in docs/codegen.md).
KernelSpec default_spec(Family family, const LayerShape& layer, Arch arch, const BatchBucket& bucket,
                        const Sparsity& sparsity = {});

}  // namespace ffnjit
