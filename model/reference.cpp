// fp64 CPU reference of the FFN and of TwELL packing.
#include "model/reference.hpp"

#include <algorithm>
#include <cmath>
#include <thread>

#include "support/bf16.hpp"

namespace ffnjit::ref {
namespace {

double dot_bf16(const uint16_t* a, const uint16_t* b, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += double(bf16_to_float(a[i])) * double(bf16_to_float(b[i]));
  return s;
}

void forward_token(const FfnWeights& w, const uint16_t* x_row, double* out) {
  std::vector<double> g(w.d_ff), h(w.d_ff, 0.0);
  gate_row(w, x_row, g.data());
  bool finite = true;
  for (int i = 0; i < w.d_model; ++i) finite &= std::isfinite(bf16_to_float(x_row[i]));
  for (int j = 0; j < w.d_ff; ++j) {
    const bool active = is_active(w, g[j]);
    if (!active && finite) continue;  // inactive neuron contributes exactly 0
    const double a = active ? act_value(w, g[j]) : 0.0;
    const double u = w.gated ? dot_bf16(x_row, w.wu + size_t(j) * w.d_model, w.d_model) +
                                   (w.up_bias ? double(w.up_bias[j]) : 0.0)
                             : 1.0;
    h[j] = w.gated ? a * u : a;
  }
  // Row d of Wd is contiguous in j: walk it over the contributing neurons only.
  std::vector<int> used;
  for (int j = 0; j < w.d_ff; ++j)
    if (h[j] != 0.0 || !finite) used.push_back(j);
  for (int d = 0; d < w.d_model; ++d) {
    const uint16_t* wd_row = w.wd + size_t(d) * w.d_ff;
    double s = w.down_bias ? double(w.down_bias[d]) : 0.0;
    for (int j : used) s += h[j] * double(bf16_to_float(wd_row[j]));
    out[d] = s;
  }
}

// fn(i) for i in [0, n) on all host cores.
template <class Fn>
void parallel_for(int n, Fn fn) {
  const int workers = std::max(1, std::min<int>(n, int(std::thread::hardware_concurrency())));
  std::vector<std::thread> pool;
  for (int t = 0; t < workers; ++t)
    pool.emplace_back([&, t] {
      for (int i = t; i < n; i += workers) fn(i);
    });
  for (auto& th : pool) th.join();
}

}  // namespace

void gate_row(const FfnWeights& w, const uint16_t* x_row, double* g) {
  const uint16_t* wg = w.gated ? w.wg : w.wu;
  const float* bias = w.gated ? w.gate_bias : w.up_bias;
  for (int j = 0; j < w.d_ff; ++j)
    g[j] = dot_bf16(x_row, wg + size_t(j) * w.d_model, w.d_model) + (bias ? double(bias[j]) : 0.0);
}

bool is_active(const FfnWeights& w, double z) {
  const float zb = bf16_to_float(float_to_bf16(float(z)));
  return w.activation == Activation::kFatRelu ? !(zb <= w.threshold) : !(zb <= 0.0f);
}

double act_value(const FfnWeights& w, double z) {
  return w.activation == Activation::kRelu2 ? z * z : z;
}

void gate_rows(const FfnWeights& w, const uint16_t* x, const std::vector<int>& tokens, double* g) {
  parallel_for(int(tokens.size()),
               [&](int i) { gate_row(w, x + size_t(tokens[i]) * w.d_model, g + size_t(i) * w.d_ff); });
}

void ffn_forward(const FfnWeights& w, const uint16_t* x, const std::vector<int>& tokens, double* out) {
  parallel_for(int(tokens.size()),
               [&](int i) { forward_token(w, x + size_t(tokens[i]) * w.d_model, out + size_t(i) * w.d_model); });
}

Twell twell_pack(const float* gate, int tokens, int d_ff, int tile_n, int capacity,
                 Activation activation, float threshold) {
  Twell t;
  t.tokens = tokens, t.d_ff = d_ff, t.tile_n = tile_n, t.capacity = capacity;
  t.n_tiles = (d_ff + tile_n - 1) / tile_n;
  t.counts.assign(size_t(tokens) * t.n_tiles, 0);
  t.entries.assign(size_t(tokens) * t.n_tiles * capacity, 0);
  for (int m = 0; m < tokens; ++m)
    for (int tile = 0; tile < t.n_tiles; ++tile) {
      const size_t slot = size_t(m) * t.n_tiles + tile;
      uint32_t count = 0;
      for (int c = 0; c < tile_n && tile * tile_n + c < d_ff; ++c) {
        const float v = gate[size_t(m) * d_ff + tile * tile_n + c];
        if (v <= (activation == Activation::kFatRelu ? threshold : 0.0f)) continue;
        const float z = bf16_to_float(float_to_bf16(v));
        const float a = activation == Activation::kRelu2 ? z * z : z;
        if (count < uint32_t(capacity))
          t.entries[slot * capacity + count] = (uint32_t(float_to_bf16(a)) << 16) | uint32_t(c);
        ++count;
      }
      t.counts[slot] = count;
      t.overflow += count > uint32_t(capacity);
    }
  return t;
}

std::vector<float> twell_unpack(const Twell& t) {
  std::vector<float> dense(size_t(t.tokens) * t.d_ff, 0.0f);
  for (int m = 0; m < t.tokens; ++m)
    for (int tile = 0; tile < t.n_tiles; ++tile) {
      const size_t slot = size_t(m) * t.n_tiles + tile;
      const uint32_t stored = std::min<uint32_t>(t.counts[slot], uint32_t(t.capacity));
      for (uint32_t e = 0; e < stored; ++e) {
        const uint32_t entry = t.entries[slot * t.capacity + e];
        dense[size_t(m) * t.d_ff + tile * t.tile_n + (entry & 0xffff)] = bf16_to_float(uint16_t(entry >> 16));
      }
    }
  return dense;
}

}  // namespace ffnjit::ref
