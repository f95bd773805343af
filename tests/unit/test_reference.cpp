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

namespace {
// The decision every GPU path makes: on z rounded to bf16 (through fp32).
double bf16_round(double z) {
  return bf16_to_float(float_to_bf16(float(z)));
}
}  // namespace

TEST_CASE("reference FFN with biases and each activation matches a naive dense evaluation") {
  std::mt19937 rng(11);
  const int dm = 24, dff = 40, M = 6;
  auto wg = random_bf16(size_t(dff) * dm, rng), wu = random_bf16(size_t(dff) * dm, rng),
       wd = random_bf16(size_t(dm) * dff, rng), x = random_bf16(size_t(M) * dm, rng);
  auto floats = [&](int n) {
    std::vector<float> v;
    for (uint16_t b : random_bf16(size_t(n), rng)) v.push_back(bf16_to_float(b));
    return v;
  };
  const std::vector<float> bg = floats(dff), bu = floats(dff), bd = floats(dm);
  for (bool gated : {true, false})
    for (ref::Activation act :
         {ref::Activation::kRelu, ref::Activation::kRelu2, ref::Activation::kFatRelu})
      for (bool biased : {false, true}) {
        ref::FfnWeights w{wg.data(), wu.data(), wd.data(), dm, dff, gated};
        if (biased)
          w.gate_bias = gated ? bg.data() : nullptr, w.up_bias = bu.data(), w.down_bias = bd.data();
        w.activation = act;
        w.threshold = act == ref::Activation::kFatRelu ? 1.5f : 0.0f;
        std::vector<double> out(size_t(M) * dm);
        ref::ffn_forward(w, x.data(), {0, 1, 2, 3, 4, 5}, out.data());
        int active = 0, inactive_positive = 0;
        for (int m = 0; m < M; ++m)
          for (int d = 0; d < dm; ++d) {
            double want = biased ? bd[d] : 0.0;
            for (int j = 0; j < dff; ++j) {
              double z = 0, u = 0;
              for (int k = 0; k < dm; ++k) {
                z += double(bf16_to_float(x[m * dm + k])) *
                     bf16_to_float((gated ? wg : wu)[j * dm + k]);
                u += double(bf16_to_float(x[m * dm + k])) * bf16_to_float(wu[j * dm + k]);
              }
              if (biased) z += gated ? bg[j] : bu[j], u += bu[j];
              const double edge = act == ref::Activation::kFatRelu ? 1.5 : 0.0;
              const bool on = bf16_round(z) > edge;
              if (d == 0) active += on, inactive_positive += !on && z > 0;
              if (!on) continue;
              const double a = act == ref::Activation::kRelu2 ? z * z : z;
              want += (gated ? a * u : a) * bf16_to_float(wd[d * dff + j]);
            }
            INFO("gated=" << gated << " act=" << int(act) << " biased=" << biased);
            CHECK(out[m * dm + d] == Approx(want).epsilon(1e-12).margin(1e-12));
          }
        CHECK(active > 0);  // the cases exercise both sides of the edge
        if (act == ref::Activation::kFatRelu) CHECK(inactive_positive > 0);
      }
}

TEST_CASE("reference decides activity on the bf16-rounded pre-activation, NaN active") {
  ref::FfnWeights relu{}, fat{};
  fat.activation = ref::Activation::kFatRelu;
  fat.threshold = 1.0f;
  CHECK_FALSE(ref::is_active(relu, 0.0));
  CHECK_FALSE(ref::is_active(relu, -1e-3));
  CHECK(ref::is_active(relu, 1e-3));
  CHECK(ref::is_active(relu, std::nan("")));
  CHECK_FALSE(ref::is_active(fat, 1.0));
  // Above the threshold in fp64 but rounds to it in bf16 (1 + 2^-9 < half a bf16 ulp of 1):
  // inactive, as on the GPU.
  CHECK_FALSE(ref::is_active(fat, 1.0 + std::ldexp(1.0, -9)));
  CHECK(ref::is_active(fat, 1.0 + std::ldexp(1.0, -7)));  // the next bf16 value above 1
  CHECK(ref::is_active(fat, std::nan("")));
  CHECK_FALSE(ref::is_active(fat, 0.5));  // positive but under the threshold
  ref::FfnWeights sq{};
  sq.activation = ref::Activation::kRelu2;
  CHECK(ref::act_value(sq, -3.0) == 9.0);  // only ever asked for active neurons
  CHECK(ref::act_value(fat, 1.25) == 1.25);
}

TEST_CASE("reference output of a token with no active neuron is exactly the down bias") {
  const int dm = 8, dff = 16;
  std::vector<uint16_t> wg(size_t(dff) * dm, float_to_bf16(-1.0f)),
      wu(wg.size(), float_to_bf16(1.0f)), wd(wg.size(), float_to_bf16(1.0f)),
      x(dm, float_to_bf16(1.0f));
  std::vector<float> bd(dm);
  for (int d = 0; d < dm; ++d) bd[d] = 0.25f * float(d) - 1.0f;
  for (bool gated : {true, false}) {
    ref::FfnWeights w{wg.data(), gated ? wu.data() : wg.data(), wd.data(), dm, dff, gated};
    w.down_bias = bd.data();
    std::vector<double> out(dm);
    ref::ffn_forward(w, x.data(), {0}, out.data());
    for (int d = 0; d < dm; ++d) CHECK(out[d] == double(bd[d]));
    // A gate bias that turns every neuron on: each contributes act(z) * u * 1.
    std::vector<float> bg(dff, 10.0f);
    (gated ? w.gate_bias : w.up_bias) = bg.data();
    ref::ffn_forward(w, x.data(), {0}, out.data());
    const double z = -8.0 + 10.0, u = gated ? 8.0 : 1.0;
    for (int d = 0; d < dm; ++d) CHECK(out[d] == Approx(bd[d] + dff * z * u));
  }
}

TEST_CASE("TwELL pack applies relu2 and fatrelu") {
  const int dff = 32;
  std::vector<float> gate(dff, -1.0f);
  gate[2] = 0.5f, gate[5] = 3.0f, gate[7] = 1.0f, gate[9] = std::numeric_limits<float>::quiet_NaN();
  auto sq = ref::twell_pack(gate.data(), 1, dff, 32, 8, ref::Activation::kRelu2);
  REQUIRE(sq.counts[0] == 4);
  CHECK(bf16_to_float(uint16_t(sq.entries[0] >> 16)) == 0.25f);
  CHECK(bf16_to_float(uint16_t(sq.entries[1] >> 16)) == 9.0f);
  auto fat = ref::twell_pack(gate.data(), 1, dff, 32, 8, ref::Activation::kFatRelu, 1.0f);
  REQUIRE(fat.counts[0] == 2);  // 3.0 and NaN; 0.5 and 1.0 are not above the threshold
  CHECK((fat.entries[0] & 0xffff) == 5);
  CHECK((fat.entries[1] & 0xffff) == 9);
  CHECK(bf16_to_float(uint16_t(fat.entries[0] >> 16)) == 3.0f);
}
