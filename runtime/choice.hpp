// What the tuner picks for a layer and batch bucket, and how it is stored: the
// sparse kernel configuration or the dense fallback, as JSON in the tuning record.
#pragma once

#include <nlohmann/json.hpp>

#include "runtime/sparse_ffn.hpp"

namespace ffnjit {

struct Choice {
  enum class Strategy { kSparse, kDense } strategy = Strategy::kSparse;
  SparseFfnConfig sparse;  // valid when strategy == kSparse
  std::string label() const;  // "sparse tn128c31 m128k64w2x4s3b2 t256p1b4" or "dense (cuBLASLt)"
};

// The signature tuning records are stored under, and that the runtime looks up when
// an engine registers a layer without a layer_id: "ffn:2048x5632:gated:bf16". With a
// profile, the tuner appends the layer class (":tn128c31"), which engines pass as
// their layer_id to get the specialized records.
std::string shape_signature(const LayerShape& layer);

// {"strategy": "sparse", "tile_n": .., "capacity": .., "gate": {..}, "up_down": {..},
//  "kernels": [names]} or {"strategy": "dense", "kernels": []}.
nlohmann::json choice_to_json(const Choice& c);
// Rebuilds and validates a choice for this layer and arch; refuses unknown strategies.
Expected<Choice> choice_from_json(const nlohmann::json& j, const LayerShape& layer, Arch arch,
                                  const BatchBucket& bucket);

}  // namespace ffnjit
