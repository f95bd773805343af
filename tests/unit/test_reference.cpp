// Unit tests of the fp64 CPU reference and host TwELL packing.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "model/reference.hpp"
#include "support/bf16.hpp"

using namespace ffnjit;

namespace {
std::vector<uint16_t> random_bf16(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = float_to_bf16(d(rng));
  return v;
}
}  // namespace

TEST_CASE("reference FFN matches a naive dense evaluation") {
  std::mt19937 rng(7);
  const int dm = 24, dff = 40, M = 5;
  auto wg = random_bf16(size_t(dff) * dm, rng), wu = random_bf16(size_t(dff) * dm, rng),
       wd = random_bf16(size_t(dm) * dff, rng), x = random_bf16(size_t(M) * dm, rng);
  for (bool gated : {true, false}) {
    ref::FfnWeights w{wg.data(), wu.data(), wd.data(), dm, dff, gated};
    std::vector<double> out(size_t(M) * dm);
    ref::ffn_forward(w, x.data(), {0, 1, 2, 3, 4}, out.data());
    for (int m = 0; m < M; ++m)
      for (int d = 0; d < dm; ++d) {
        double want = 0;
        for (int j = 0; j < dff; ++j) {
          double g = 0, u = 0;
          for (int k = 0; k < dm; ++k) {
            g += double(bf16_to_float(x[m * dm + k])) * bf16_to_float((gated ? wg : wu)[j * dm + k]);
            u += double(bf16_to_float(x[m * dm + k])) * bf16_to_float(wu[j * dm + k]);
          }
          double h = gated ? std::max(g, 0.0) * u : std::max(g, 0.0);
          want += h * bf16_to_float(wd[d * dff + j]);
        }
        CHECK(out[m * dm + d] == Approx(want).epsilon(1e-12).margin(1e-12));
      }
  }
}

TEST_CASE("reference propagates NaN and Inf like the dense math") {
  std::mt19937 rng(3);
  const int dm = 16, dff = 32;
  auto wg = random_bf16(size_t(dff) * dm, rng), wu = random_bf16(size_t(dff) * dm, rng),
       wd = random_bf16(size_t(dm) * dff, rng), x = random_bf16(size_t(3) * dm, rng);
  x[0 * dm + 5] = float_to_bf16(std::numeric_limits<float>::quiet_NaN());
  x[1 * dm + 2] = float_to_bf16(std::numeric_limits<float>::infinity());
  ref::FfnWeights w{wg.data(), wu.data(), wd.data(), dm, dff, true};
  std::vector<double> out(size_t(3) * dm);
  ref::ffn_forward(w, x.data(), {0, 1, 2}, out.data());
  for (int d = 0; d < dm; ++d) {
    CHECK(std::isnan(out[d]));
    CHECK_FALSE(std::isfinite(out[dm + d]));
    CHECK(std::isfinite(out[2 * dm + d]));
  }
}

TEST_CASE("TwELL pack keeps neuron order, counts overflow, unpack inverts it") {
  const int M = 3, dff = 72, tn = 32, cap = 4;
  std::vector<float> gate(size_t(M) * dff, -1.0f);
  gate[0 * dff + 3] = 0.5f;
  gate[0 * dff + 1] = 2.0f;
  gate[0 * dff + 40] = 1.0f;
  for (int j = 64; j < 72; ++j) gate[1 * dff + j] = float(j);  // 8 active in the partial last tile
  gate[2 * dff + 10] = std::numeric_limits<float>::quiet_NaN();
  auto t = ref::twell_pack(gate.data(), M, dff, tn, cap);
  CHECK(t.n_tiles == 3);
  CHECK(t.counts[0] == 2);
  CHECK((t.entries[0] & 0xffff) == 1);  // neuron 1 before neuron 3
  CHECK((t.entries[1] & 0xffff) == 3);
  CHECK(t.counts[1] == 1);
  CHECK(t.counts[1 * 3 + 2] == 8);
  CHECK(t.overflow == 1);
  CHECK(t.counts[2 * 3 + 0] == 1);  // NaN is active
  auto back = ref::twell_unpack(t);
  CHECK(back[0 * dff + 1] == 2.0f);
  CHECK(back[0 * dff + 3] == 0.5f);
  CHECK(back[0 * dff + 40] == 1.0f);
  CHECK(back[1 * dff + 64] == 64.0f);
  CHECK(back[1 * dff + 67] == 67.0f);
  CHECK(back[1 * dff + 68] == 0.0f);  // beyond capacity: recomputed by the kernels, not stored
  CHECK(std::isnan(back[2 * dff + 10]));
}
