// Layer ids: how `ffnjit tune` and a serving engine name the same FFN layer
// (docs/identity.md): "<fingerprint>:<index>" or "<fingerprint>:<index>:tp<size>.<rank>".
#pragma once

#include <string>

#include "support/status.hpp"

namespace ffnjit {

struct LayerId {
  std::string fingerprint;  // 64 lower-case hex digits
  int index = 0;            // FFN layer index in the checkpoint
  int tp_size = 1;          // tensor-parallel shards (1: the whole layer)
  int tp_rank = 0;          // this shard, 0 <= tp_rank < tp_size
};

// Longest id accepted (FFNJIT_LAYER_ID_MAX in ffnjit.h).
inline constexpr size_t kLayerIdMax = 255;
// Most tensor-parallel shards an id may name.
inline constexpr int kMaxTensorParallel = 64;

std::string format_layer_id(const LayerId& id);
// Strict: refuses anything format_layer_id would not produce, naming what is wrong.
Expected<LayerId> parse_layer_id(const std::string& text);
bool is_fingerprint(const std::string& s);  // 64 lower-case hex digits

}  // namespace ffnjit
