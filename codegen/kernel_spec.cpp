// KernelSpec validation, naming and the default (untuned) configurations.
#include "codegen/kernel_spec.hpp"

#include <algorithm>
#include <sstream>

namespace ffnjit {
namespace {

bool is_pow2(int x) { return x > 0 && (x & (x - 1)) == 0; }
std::string str(int x) { return std::to_string(x); }

// Opt-in dynamic shared memory per block on each target.
int max_smem(Arch a) {
  switch (a) {
    case Arch::kSm80: return 163 * 1024;
    case Arch::kSm89: return 99 * 1024;
    case Arch::kSm90a: return 227 * 1024;
  }
  return 48 * 1024;
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }

}  // namespace

const char* family_name(Family f) {
  switch (f) {
    case Family::kGatePack: return "gate_pack";
    case Family::kGateGemv: return "gate_gemv";
    case Family::kPack: return "pack";
    case Family::kUpDown: return "up_down";
    case Family::kUp: return "up";
    case Family::kDown: return "down";
    case Family::kTranspose: return "transpose";
    case Family::kDenseAct: return "dense_act";
    case Family::kStats: return "stats";
  }
  return "?";
}

const char* dtype_name(DType) { return "bf16"; }

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::kRelu:
      return "relu";
    case Activation::kRelu2:
      return "relu2";
    case Activation::kFatRelu:
      return "fatrelu";
  }
  return "?";
}

Expected<Activation> parse_activation(const std::string& s) {
  for (Activation a : {Activation::kRelu, Activation::kRelu2, Activation::kFatRelu})
    if (s == activation_name(a)) return a;
  return user_error("unknown activation '" + s + "'; use relu, relu2 or fatrelu");
}

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::kSm80: return "sm_80";
    case Arch::kSm89: return "sm_89";
    case Arch::kSm90a: return "sm_90a";
  }
  return "?";
}

Expected<Family> parse_family(const std::string& s) {
  for (Family f : {Family::kGatePack, Family::kGateGemv, Family::kPack, Family::kUpDown, Family::kUp, Family::kDown,
                   Family::kTranspose, Family::kDenseAct, Family::kStats})
    if (s == family_name(f)) return f;
  return user_error("unknown kernel family '" + s +
                    "'; use gate_pack, gate_gemv, pack, up_down, up, down, transpose, dense_act or stats");
}

Expected<Arch> parse_arch(const std::string& s) {
  std::string t = s;
  if (t.rfind("sm_", 0) == 0) t = t.substr(3);
  else if (t.rfind("sm", 0) == 0) t = t.substr(2);
  if (t == "80") return Arch::kSm80;
  if (t == "89") return Arch::kSm89;
  if (t == "90a") return Arch::kSm90a;
  if (t == "90")
    return user_error("arch sm_90 lacks the Hopper-specific instructions ffnjit targets; use sm_90a");
  return user_error("unsupported arch '" + s + "'; use sm_80, sm_89 or sm_90a");
}

Status KernelSpec::validate() const {
  const auto& L = layer;
  if (L.d_model <= 0 || L.d_model % 8 != 0)
    return user_error("d_model=" + str(L.d_model) +
                      " is not a positive multiple of 8; pad the weights to a multiple of 8");
  if (L.d_ff <= 0 || L.d_ff % 8 != 0)
    return user_error("d_ff=" + str(L.d_ff) +
                      " is not a positive multiple of 8; pad the weights to a multiple of 8");
  if (L.d_model > 65536 || L.d_ff > (1 << 20))
    return user_error("d_model=" + str(L.d_model) + ", d_ff=" + str(L.d_ff) +
                      " exceed the supported maxima (65536, 1048576); shard the layer");
  if (L.gate_bias && !L.gated)
    return user_error(
        "gate_bias is set on a non-gated layer; its first projection is up_proj/fc1: set up_bias");
  const auto& S = sparsity;
  if (!is_pow2(S.tile_n) || S.tile_n < 32 || S.tile_n > 256)
    return user_error("tile_n=" + str(S.tile_n) + " must be 32, 64, 128 or 256");
  if (S.capacity < 1 || S.capacity > S.tile_n)
    return user_error("capacity=" + str(S.capacity) + " must be in [1, tile_n=" + str(S.tile_n) + "]");
  if (bucket.min_tokens < 1 || bucket.max_tokens < bucket.min_tokens)
    return user_error("batch bucket [" + str(bucket.min_tokens) + ", " + str(bucket.max_tokens) +
                      "] is empty or starts below 1 token");
  const auto& T = tile;
  const TileConfig def;
  if (T.min_blocks < 1 || T.min_blocks > 8) return user_error("min_blocks=" + str(T.min_blocks) + " must be in [1, 8]");
  if (family == Family::kGatePack) {
    if (T.threads != def.threads) return user_error("gate_pack ignores threads; leave it at its default");
    if (T.splits < 1 || T.splits > 8)
      return user_error("gate_pack splits=" + str(T.splits) + " (CTAs of a cluster per tile) must be in [1, 8]");
    if (T.splits > 1 && arch != Arch::kSm90a)
      return user_error("gate_pack splits=" + str(T.splits) + " needs thread-block clusters (sm_90a); use splits=1 on " +
                        arch_name(arch));
    if (!is_pow2(T.bm) || T.bm < 16 || T.bm > 256)
      return user_error("bm=" + str(T.bm) + " must be a power of two in [16, 256]");
    if (T.bk != 32 && T.bk != 64) return user_error("bk=" + str(T.bk) + " must be 32 or 64");
    if (!is_pow2(T.warps_m) || !is_pow2(T.warps_n) || T.warps_m * T.warps_n > 16)
      return user_error("warps " + str(T.warps_m) + "x" + str(T.warps_n) +
                        " must be powers of two with at most 16 warps");
    if (T.bm % (16 * T.warps_m) != 0)
      return user_error("bm=" + str(T.bm) + " must be a multiple of 16*warps_m=" + str(16 * T.warps_m));
    if (S.tile_n % (16 * T.warps_n) != 0)
      return user_error("tile_n=" + str(S.tile_n) + " must be a multiple of 16*warps_n=" +
                        str(16 * T.warps_n) + "; use fewer warps along n");
    const int acc = (T.bm / T.warps_m) * (S.tile_n / T.warps_n) / 32;
    if (acc > 128)
      return user_error("warp tile holds " + str(acc) +
                        " accumulators per thread (max 128); use more warps or a smaller bm");
    if (T.stages < 2 || T.stages > 6) return user_error("stages=" + str(T.stages) + " must be in [2, 6]");
  } else if (family == Family::kGateGemv) {
    if (T.bk != def.bk || T.warps_m != def.warps_m || T.warps_n != def.warps_n || T.splits != def.splits)
      return user_error("gate_gemv ignores bk/warps/splits; leave them at their defaults");
    if (T.bm < 8 || T.bm > 64 || T.bm % 8 != 0)
      return user_error("gate_gemv bm=" + str(T.bm) + " must be a multiple of 8 up to 64");
    if (T.threads != 128 && T.threads != 256 && T.threads != 512)
      return user_error("threads=" + str(T.threads) + " must be 128, 256 or 512");
    if ((T.threads / 32) % (S.tile_n / 16) != 0)
      return user_error("gate_gemv threads=" + str(T.threads) + " must be a multiple of 32 * tile_n / 16 = " +
                        str(2 * S.tile_n) + " (one warp per 16 neurons and K slice); use more threads");
    if (T.stages != 1 && T.stages != 2 && T.stages != 4 && T.stages != 8)
      return user_error("gate_gemv stages=" + str(T.stages) + " (loads in flight per warp) must be 1, 2, 4 or 8");
  } else {
    if (T.bm != def.bm || T.bk != def.bk || T.warps_m != def.warps_m || T.warps_n != def.warps_n ||
        T.stages != def.stages)
      return user_error(std::string(family_name(family)) +
                        " ignores bm/bk/warps/stages; leave them at their defaults");
    if (T.threads != 128 && T.threads != 256 && T.threads != 512)
      return user_error("threads=" + str(T.threads) + " must be 128, 256 or 512");
    const int slice_vecs = L.d_model / 8 / (family == Family::kDown ? std::max(1, T.splits) : 1);
    if (ceil_div(slice_vecs, T.threads) > 8)
      return user_error("d_model=" + str(L.d_model) + " needs more than 8 vectors per thread at threads=" +
                        str(T.threads) + "; use more threads");
    if (family == Family::kDown) {
      if (T.splits < 1 || (L.d_model / 8) % T.splits != 0)
        return user_error("down splits=" + str(T.splits) + " must divide d_model/8=" + str(L.d_model / 8));
    } else if (T.splits < 1 || T.splits > n_tiles()) {
      return user_error("splits=" + str(T.splits) + " must be in [1, n_tiles=" + str(n_tiles()) + "]");
    }
    if ((family == Family::kTranspose || family == Family::kDenseAct || family == Family::kStats ||
         family == Family::kPack) &&
        T.splits != 1)
      return user_error(std::string(family_name(family)) + " ignores splits; leave it at 1");
    if (family == Family::kTranspose && T.threads != 256)
      return user_error("transpose runs 256 threads (32x8); leave threads at 256");
  }
  if (dynamic_smem_bytes() > max_smem(arch))
    return user_error(std::string(kernel_name()) + " needs " + str(dynamic_smem_bytes()) +
                      " bytes of shared memory; " + arch_name(arch) + " allows " + str(max_smem(arch)) +
                      "; use fewer stages or smaller tiles");
  return {};
}

Activation KernelSpec::activation() const {
  switch (family) {
    case Family::kGatePack:
    case Family::kGateGemv:
    case Family::kPack:
    case Family::kUpDown:
    case Family::kDown:
    case Family::kDenseAct:
      return layer.activation;
    default:
      return Activation::kRelu;
  }
}

bool KernelSpec::gate_bias() const {
  const bool reads = family == Family::kGatePack || family == Family::kGateGemv ||
                     family == Family::kUpDown || family == Family::kDown;
  return reads && (layer.gated ? layer.gate_bias : layer.up_bias);
}

bool KernelSpec::up_bias() const {
  const bool reads = family == Family::kUpDown || family == Family::kUp || family == Family::kDown;
  return reads && layer.gated && layer.up_bias;
}

bool KernelSpec::down_bias() const {
  return (family == Family::kUpDown || family == Family::kDown) && layer.down_bias;
}

int KernelSpec::block_threads() const {
  if (family == Family::kGatePack) return 32 * tile.warps_m * tile.warps_n;  // gate_gemv: tile.threads
  return tile.threads;
}

int KernelSpec::cluster_size() const {
  if (family == Family::kGatePack) return tile.splits;
  if (family == Family::kUpDown && arch == Arch::kSm90a && tile.splits > 1 && tile.splits <= 8) return tile.splits;
  return 1;
}

int KernelSpec::dynamic_smem_bytes() const {
  if (family == Family::kGatePack) {
    int pipeline = tile.stages * (tile.bm + sparsity.tile_n) * tile.bk * 2;
    int epilogue = tile.bm * (sparsity.tile_n + 8) * 2;
    if (tile.splits > 1)  // the fp32 partial the cluster reads, then this CTA's rows in bf16
      epilogue = tile.bm * sparsity.tile_n * 4 + ceil_div(tile.bm, tile.splits) * (sparsity.tile_n + 8) * 2;
    return std::max(pipeline, epilogue);
  }
  if (family == Family::kGateGemv) {
    const int k_split = tile.threads / 32 / (sparsity.tile_n / 16);
    return k_split * tile.bm * sparsity.tile_n * 4 + tile.bm * (sparsity.tile_n + 8) * 2;
  }
  if (family == Family::kUpDown || family == Family::kUp || family == Family::kDown) {
    int tiles_per_split = family == Family::kDown ? n_tiles() : ceil_div(n_tiles(), tile.splits);
    return layer.d_model * 2                          // x row, bf16
           + tiles_per_split * sparsity.capacity * 8  // (h, neuron) list
           + sparsity.tile_n * 4                      // overflow tile's h
           + (tiles_per_split + 2) * 4 +
           16  // list offsets, overflow flag
           // fp32 [d_model]: the accumulators while an overflowed tile's up dots run,
           // then the split's partial that its cluster reads
           + (family != Family::kUp ? layer.d_model * 4 : 0);
  }
  return 0;
}

namespace {

// The name's math part: "_relu2" / "_fatrelu" (nothing for relu), then "_b" and the
// biases the kernel reads: g (the gate projection's), u (a gated layer's Wu), d (Wd's).
std::string math_suffix(const KernelSpec& s) {
  std::string n;
  if (s.activation() != Activation::kRelu) n += std::string("_") + activation_name(s.activation());
  if (s.gate_bias() || s.up_bias() || s.down_bias())
    n += std::string("_b") + (s.gate_bias() ? "g" : "") + (s.up_bias() ? "u" : "") +
         (s.down_bias() ? "d" : "");
  return n;
}

}  // namespace

std::string KernelSpec::kernel_name() const {
  std::string a = arch_name(arch);
  a.erase(std::remove(a.begin(), a.end(), '_'), a.end());  // sm_90a -> sm90a
  std::string n = std::string("ffnjit_") + family_name(family) + "_" + a + "_" + dtype_name(layer.dtype);
  if (family == Family::kTranspose) return n;
  if (family == Family::kDenseAct)
    return n + (layer.gated ? "_g" : "_ng") + math_suffix(*this) + "_n" + str(layer.d_ff) + "_t" +
           str(tile.threads);
  if (family == Family::kStats || family == Family::kPack)
    return n + math_suffix(*this) + "_n" + str(layer.d_ff) + "_tn" + str(sparsity.tile_n) + "c" +
           str(sparsity.capacity) + "_t" + str(tile.threads);
  n += layer.gated ? "_g" : "_ng";
  n += math_suffix(*this);
  n += "_k" + str(layer.d_model) + "n" + str(layer.d_ff) + "_tn" + str(sparsity.tile_n) + "c" +
       str(sparsity.capacity);
  if (family == Family::kGatePack)
    n += "_m" + str(tile.bm) + "k" + str(tile.bk) + "w" + str(tile.warps_m) + "x" + str(tile.warps_n) + "s" +
         str(tile.stages) + (tile.splits > 1 ? "c" + str(tile.splits) : "");
  else if (family == Family::kGateGemv)
    n += "_m" + str(tile.bm) + "t" + str(tile.threads) + "u" + str(tile.stages);
  else
    n += "_t" + str(tile.threads) + "p" + str(tile.splits);
  if (tile.min_blocks != 1) n += "b" + str(tile.min_blocks);
  return n;
}

std::string KernelSpec::canonical() const {
  // Only what changes the generated code; the batch bucket selects but does not shape it.
  std::ostringstream o;
  if (family == Family::kTranspose) {
    o << "family=transpose;arch=" << arch_name(arch) << ";dtype=" << dtype_name(layer.dtype);
    return o.str();
  }
  o << "family=" << family_name(family) << ";arch=" << arch_name(arch) << ";dtype=" << dtype_name(layer.dtype)
    << ";d_model=" << layer.d_model << ";d_ff=" << layer.d_ff << ";gated=" << layer.gated
    << ";tile_n=" << sparsity.tile_n << ";capacity=" << sparsity.capacity << ";bm=" << tile.bm
    << ";bk=" << tile.bk << ";warps=" << tile.warps_m << "x" << tile.warps_n << ";stages=" << tile.stages
    << ";threads=" << tile.threads << ";splits=" << tile.splits << ";min_blocks=" << tile.min_blocks;
  // The math beyond a bias-free ReLU, only when present: the specs (and cache keys) of
  // bias-free ReLU kernels read as they did before activations and biases existed.
  if (activation() != Activation::kRelu) o << ";act=" << activation_name(activation());
  if (gate_bias() || up_bias() || down_bias())
    o << ";bias=" << (gate_bias() ? "g" : "") << (up_bias() ? "u" : "") << (down_bias() ? "d" : "");
  return o.str();
}

KernelSpec default_spec(Family family, const LayerShape& layer, Arch arch, const BatchBucket& bucket,
                        const Sparsity& sparsity) {
  KernelSpec s;
  s.family = family;
  s.layer = layer;
  s.arch = arch;
  s.bucket = bucket;
  s.sparsity = sparsity;
  if (family == Family::kGatePack) {
    // Few tokens: short CTA tiles so the grid still covers the neurons; many: 128-row
    // tiles, bk 64, two CTAs per SM (measured best of 12 configs on H100, docs/kernels.md).
    if (bucket.max_tokens <= 16) s.tile.bm = 16, s.tile.warps_m = 1;
    else if (bucket.max_tokens <= 64) s.tile.bm = 64, s.tile.warps_m = 2;
    s.tile.warps_n = std::min(4, sparsity.tile_n / 16);
    s.tile.bk = 64;
    const int acc = (s.tile.bm / s.tile.warps_m) * (sparsity.tile_n / s.tile.warps_n) / 32;
    s.tile.min_blocks = s.tile.bm >= 128 && acc <= 64 ? 2 : 1;  // 128 accumulators need > 128 registers
    if (arch == Arch::kSm89) s.tile.stages = 2;
  } else if (family == Family::kGateGemv) {
    // One column block for the bucket's tokens, at most 16 at tile widths of 128 and
    // more (registers), 32 below; 16 warps: tile_n / 16 neuron groups times the K
    // slices that fill them; 4 KB in flight per warp (H100, docs/kernels.md).
    s.tile.bm = std::clamp((bucket.max_tokens + 7) / 8 * 8, 8, sparsity.tile_n >= 128 ? 16 : 32);
    s.tile.threads = 512;
    s.tile.stages = 4;
  } else if (family == Family::kUpDown || family == Family::kUp) {
    s.tile.threads = layer.d_model / 8 > 256 * 4 ? 512 : 256;
    // Four CTAs per SM caps registers at 64: more gathers in flight (1.8x on H100).
    s.tile.min_blocks = s.tile.threads == 512 ? 2 : 4;
    // Many tokens: smaller CTAs, eight per SM (291 vs 319 us at 8192 tokens).
    if (bucket.min_tokens >= 512 && layer.d_model / 8 <= 128 * 2) s.tile.threads = 128, s.tile.min_blocks = 8;
    // Few tokens: split each token's tiles over CTAs so every SM has work (8 splits
    // at 1-32 tokens, 4 at 128 were best on H100: the last CTA of a token sums them).
    if (family == Family::kUpDown && bucket.max_tokens <= 128)
      s.tile.splits = std::min({s.n_tiles(), 8, std::max(1, 512 / bucket.max_tokens)});
    // Many tokens: up in two waves over halves of Wu (a smaller L2 working set; 3%
    // faster at 8192 tokens on H100, docs/performance.md).
    if (family == Family::kUp && bucket.min_tokens >= 1024) s.tile.splits = std::min(2, s.n_tiles());
  } else if (family == Family::kDown) {
    // Two column halves: each wave of CTAs gathers from half of WdT.
    s.tile.splits = (layer.d_model / 8) % 2 == 0 ? 2 : 1;
    s.tile.threads = layer.d_model / 8 / s.tile.splits > 256 * 4 ? 512 : 128;
    s.tile.min_blocks = s.tile.threads == 512 ? 2 : 8;
  } else if (family == Family::kPack) {
    s.tile.threads = 128;
  }
  return s;
}

}  // namespace ffnjit
