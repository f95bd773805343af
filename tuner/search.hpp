// The search space per kernel family, pruned by shape rules before anything compiles.
#pragma once

#include <vector>

#include "runtime/sparse_ffn.hpp"

namespace ffnjit {

// TwELL formats worth trying for a bucket: the planned one first, then (without a
// profile fixing the capacity) narrower tiles for few tokens and wider ones for many.
std::vector<Sparsity> format_candidates(const Sparsity& planned, const BatchBucket& bucket, bool from_profile);

// Gate tile variants for a format and bucket (valid specs only; the default first).
std::vector<KernelSpec> gate_candidates(const LayerShape& layer, Arch arch, const BatchBucket& bucket,
                                        const Sparsity& format);

// Up/down variants (threads, splits, CTAs per SM) for a format and bucket, default first.
std::vector<KernelSpec> up_down_candidates(const LayerShape& layer, Arch arch, const BatchBucket& bucket,
                                           const Sparsity& format);

}  // namespace ffnjit
