// Sparsity profiles: the versioned JSON format (docs/profile.md), its strict reader and
// writer, and the builder that accumulates one from gate pre-activations.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/status.hpp"

namespace ffnjit::profile {

inline constexpr const char* kFormat = "ffnjit-profile";
inline constexpr int kVersion = 1;
// Tile widths a profile records by default: every tile_n the kernels support.
inline const std::vector<int> kDefaultTileWidths = {32, 64, 128, 256};

// An exact histogram of non-negative integer counts: (value, how often), values
// strictly increasing, how-often > 0. Quantiles use the nearest-rank rule: the
// q-quantile is the smallest value v with #(samples <= v) >= ceil(q * total).
struct Histogram {
  std::vector<std::pair<uint32_t, uint64_t>> bins;
  uint64_t total() const;
  uint32_t quantile(double q) const;  // 0 for an empty histogram
  uint32_t max() const;
  double mean() const;
  uint64_t count_above(uint32_t v) const;  // samples > v
};

// Derived summary written next to each histogram for readers (checked on load).
struct Summary {
  double mean = 0;
  uint32_t p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;
  static Summary of(const Histogram& h);
};

// One tile width's view of a layer: the gate output of a token cut into tiles of
// tile_n neurons (the last may be narrower when tile_n does not divide d_ff).
struct Tiling {
  int tile_n = 0;
  int n_tiles = 0;
  Histogram per_tile;  // active neurons per (token, tile), over all pairs
  // Per tile, over tokens: the maximum and the nearest-rank quantiles.
  std::vector<uint32_t> tile_max, tile_p50, tile_p90, tile_p99, tile_p999;
};

struct LayerProfile {
  int index = 0;
  int d_model = 0;
  int d_ff = 0;
  bool gated = true;
  uint64_t tokens = 0;
  Histogram per_token;  // active neurons per token
  std::vector<Tiling> tilings;
  std::vector<uint64_t> neuron_active;  // [d_ff] tokens in which each neuron fired
  std::vector<uint32_t> dead_neurons;   // neurons that never fired, increasing

  double firing_rate(int neuron) const {
    return tokens ? double(neuron_active[neuron]) / double(tokens) : 0.0;
  }
  const Tiling* tiling(int tile_n) const;
};

struct Profile {
  std::string fingerprint;  // of the checkpoint (model::Checkpoint::fingerprint), 64 hex digits
  std::string model_type;   // informational
  std::string source;       // how it was measured, e.g. "ffnjit profile (cpu gate)"
  std::vector<LayerProfile> layers;  // increasing index, each at most once

  const LayerProfile* layer(int index) const;
};

// Canonical JSON text (2-space indented, ends with a newline).
std::string to_json(const Profile& p);
// Strict: unknown or missing fields, wrong types, out-of-range values and derived
// fields that disagree with their histograms are errors naming the field's path
// (e.g. "layers[2].tilings[1].tile_max[7]"). JSON nesting deeper than kMaxJsonDepth
// (64, support/json.hpp) is refused before the tree is built; messages quote at most
// a short excerpt of a bad value.
Expected<Profile> parse(std::string_view json_text, const std::string& label = "profile");
// Atomically: a temporary file in the same directory, renamed over `path` (a symlink
// at `path` is replaced, never written through).
Status write(const std::string& path, const Profile& p);
// `path` must be a regular file of at most kMaxProfileJsonBytes (256 MiB,
// support/files.hpp).
Expected<Profile> read(const std::string& path);

// Active neurons of a batch of tokens in CSR form: token t's neurons are
// neurons[offsets[t] .. offsets[t + 1]), increasing. The permutation search and the
// dead-neuron pruning use these samples; profiles only keep aggregates.
struct ActiveSets {
  int d_ff = 0;
  std::vector<uint64_t> offsets{0};
  std::vector<uint32_t> neurons;
  uint64_t tokens() const { return offsets.size() - 1; }
  void add_token(const uint32_t* active, size_t n);
};

// Accumulates a profile layer by layer. Feed it gate pre-activations [tokens][d_ff]
// (fp32 from the GPU gate GEMM or the CPU reference; a neuron is active when its
// value is > 0 or NaN, the TwELL packing rule) or already extracted active sets
// (serving counters). Batches may come in any number and size.
// From dense counters (as the Builder and the runtime's serving counters keep them):
// a histogram from bins [n]; a tiling from per-tile histograms [n_tiles][tile_n + 1];
// the neurons that never fired.
Histogram from_dense(const uint64_t* counts, size_t n);
Tiling tiling_from_dense(int tile_n, int d_ff, const uint64_t* per_tile);
std::vector<uint32_t> dead_neurons(const std::vector<uint64_t>& neuron_active);

class Builder {
 public:
  struct Options {
    std::vector<int> tile_widths = kDefaultTileWidths;
    uint64_t keep_sample_tokens = 4096;  // tokens per layer kept as ActiveSets (0: none)
  };
  Builder() : Builder(Options{}) {}
  explicit Builder(Options opts) : opts_(std::move(opts)) {}

  // Declares a layer before its first batch; the tile widths must be >= 1.
  Status add_layer(int index, int d_model, int d_ff, bool gated);
  Status add_gate(int layer, const float* gate, uint64_t tokens);
  Status add_active(int layer, const ActiveSets& batch);

  // The first keep_sample_tokens tokens seen per layer.
  const ActiveSets* sample(int layer) const;
  // Derives quantiles and dead neurons; the builder can keep accumulating after.
  Profile finish(std::string fingerprint, std::string model_type, std::string source) const;

 private:
  struct Acc {
    LayerProfile meta;
    std::vector<uint64_t> per_token;               // dense histogram [d_ff + 1]
    std::vector<std::vector<uint64_t>> tile_hist;  // per tiling: [n_tiles][tile_n + 1]
    std::vector<uint32_t> scratch;                 // per tiling counts of one token
    ActiveSets sample;
  };
  Acc* find(int layer);
  void add_token(Acc& a, const uint32_t* active, size_t n);
  Options opts_;
  std::vector<Acc> layers_;
};

}  // namespace ffnjit::profile
