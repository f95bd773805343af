// The certified int8 gate screen (model/screen.hpp): a neuron the screen rules out is
// inactive under every fp32 gate computation a kernel may do (several summation orders,
// then the bf16 rounding), on random, heavy and adversarial inputs: pre-activations
// within a few ulps of the threshold, an x element 100x the rest, a weight outlier per
// row, non-finite values. And the screen rules out most neurons where it should.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "model/screen.hpp"
#include "model/synthetic.hpp"
#include "support/bf16.hpp"

using namespace ffnjit;

namespace {

float bf(uint16_t v) { return bf16_to_float(v); }

// The fp32 gate values a kernel could produce for x . w + b: sequential, reversed, split
// into 8 K slices summed pairwise (gate_gemv, split-K GEMMs), with fma; each rounded to
// bf16 as the gates round z. Plus the exact value (double: products of bf16 are exact,
// the sum of d_model of them nearly so).
std::vector<float> gate_values(const uint16_t* x, const uint16_t* w, int n, float bias, double* exact) {
  float fwd = 0, rev = 0;
  for (int c = 0; c < n; ++c) fwd = std::fma(bf(x[c]), bf(w[c]), fwd);
  for (int c = n - 1; c >= 0; --c) rev = std::fma(bf(x[c]), bf(w[c]), rev);
  float slices[8] = {};
  for (int c = 0; c < n; ++c) slices[c % 8] = std::fma(bf(x[c]), bf(w[c]), slices[c % 8]);
  for (int step = 1; step < 8; step *= 2)
    for (int i = 0; i + step < 8; i += 2 * step) slices[i] += slices[i + step];
  double e = 0;
  for (int c = 0; c < n; ++c) e += double(bf(x[c])) * bf(w[c]);
  *exact = e + bias;
  std::vector<float> out;
  for (float s : {fwd, rev, slices[0]}) out.push_back(bf(float_to_bf16(s + bias)));
  return out;
}

struct Tally {
  long pairs = 0, ruled_out = 0, active = 0, violations = 0;
};

// Every (token, neuron): a neuron ruled out must be inactive under every computed value.
Tally check(const screen::Rows& rows, const std::vector<uint16_t>& wg, const std::vector<uint16_t>& x, int tokens,
            const std::vector<float>& bias, float threshold) {
  Tally t;
  const int n = rows.d_model;
  for (int m = 0; m < tokens; ++m) {
    const uint16_t* xm = x.data() + size_t(m) * n;
    const screen::Token tok = screen::quantize_token(rows, xm);
    for (int j = 0; j < rows.d_ff; ++j) {
      const float b = bias.empty() ? 0.0f : bias[size_t(j)];
      double exact = 0;
      const auto zs = gate_values(xm, wg.data() + size_t(j) * n, n, b, &exact);
      bool active = !(exact <= threshold);
      for (float z : zs) active |= !(z <= threshold);
      const bool cand = screen::candidate(rows, tok, xm, j, b, threshold);
      ++t.pairs;
      t.active += active;
      t.ruled_out += !cand;
      if (!cand && active) {
        ++t.violations;
        if (t.violations <= 3) {
          const auto e = screen::estimate(rows, tok, xm, j, b);
          UNSCOPED_INFO("token " << m << " neuron " << j << ": exact " << exact << " estimate " << e.value
                                 << " bound " << e.bound);
        }
      }
    }
  }
  return t;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = float_to_bf16(v[i]);
  return o;
}

}  // namespace

TEST_CASE("screen: the bound's pieces") {
  CHECK(screen::gamma_fp32(1) == Approx(std::ldexp(1.0, -22)).epsilon(1e-6));
  CHECK(screen::gamma_fp32(2049) > 2049 * std::ldexp(1.0, -22));
  CHECK(screen::bf16_floor(0.0f) == 0.0f);
  CHECK(screen::bf16_floor(1.0f) == 1.0f);
  // 0.1 is no bf16 value: the one below it, never the nearest one above.
  const float f = screen::bf16_floor(0.1f);
  CHECK(f <= 0.1f);
  CHECK(bf(float_to_bf16(f)) == f);
  CHECK(bf(uint16_t(float_to_bf16(f) + 1)) > 0.1f);
  CHECK(screen::bf16_floor(-0.1f) <= -0.1f);
  CHECK(screen::bf16_floor(-1e-42f) < 0.0f);
  // A 2-column layer by hand: w = (1, 0.5), x = (2, -1): z = 1.5, exact in int8 here.
  const std::vector<uint16_t> w = to_bf16({1.0f, 0.5f}), x = to_bf16({2.0f, -1.0f});
  screen::Options none;
  none.max_outliers = 0;
  auto rows = screen::build_rows(w.data(), 1, 2, none);
  REQUIRE(rows);
  const screen::Token t = screen::quantize_token(*rows, x.data());
  const auto e = screen::estimate(*rows, t, x.data(), 0, 0.0f);
  CHECK(e.value == Approx(1.5).epsilon(0.02));
  CHECK(std::fabs(e.value - 1.5) <= e.bound);
  CHECK(e.bound < 0.05);
  CHECK(screen::candidate(*rows, t, x.data(), 0, 0.0f, 0.0f));
  CHECK_FALSE(screen::candidate(*rows, t, x.data(), 0, -2.0f, 0.0f));  // z = -0.5
  CHECK(screen::candidate(*rows, t, x.data(), 0, -1.5f, 0.0f));         // z = 0: too close to rule out
}

TEST_CASE("screen: no active neuron is ruled out on synthetic, heavy and adversarial inputs") {
  for (auto [dm, dff] : {std::pair{512, 1536}, std::pair{768, 1024}}) {
    auto layer = synth::make_layer(dm, dff, true, 0.02, 11);
    auto rows = screen::build_rows(layer.wg.data(), dff, dm);
    REQUIRE(rows);
    INFO(dm << "x" << dff);
    CHECK(rows->outliers == std::vector<int>{0});  // the synthetic bias column stays exact
    const int tokens = 24;
    synth::InputOptions heavy;
    heavy.heavy_fraction = 0.5, heavy.heavy_scale = 3.0f;
    for (const auto& in : {synth::InputOptions{}, heavy}) {
      const auto x = synth::make_inputs(tokens, dm, 5 + dm, in);
      const Tally t = check(*rows, layer.wg, x, tokens, {}, 0.0f);
      CHECK(t.violations == 0);
      CHECK(t.active > 0);
      // Not vacuous: most inactive neurons are ruled out.
      CHECK(t.ruled_out >= (t.pairs - t.active) * 8 / 10);
    }
    // An x element 100x the rest (its int8 step grows, the bound with it).
    auto x = synth::make_inputs(tokens, dm, 77, {});
    std::mt19937 rng(3);
    for (int m = 0; m < tokens; ++m) {
      const size_t c = 1 + rng() % size_t(dm - 1);
      x[size_t(m) * dm + c] = float_to_bf16(100.0f * bf(x[size_t(m) * dm + c]));
    }
    CHECK(check(*rows, layer.wg, x, tokens, {}, 0.0f).violations == 0);
    // A weight outlier in every row (50x), and FATReLU thresholds that are no bf16 value.
    auto wg = layer.wg;
    for (int j = 0; j < dff; ++j) {
      const size_t c = 1 + rng() % size_t(dm - 1);
      wg[size_t(j) * dm + c] = float_to_bf16(50.0f * bf(wg[size_t(j) * dm + c]));
    }
    auto rows_o = screen::build_rows(wg.data(), dff, dm);
    REQUIRE(rows_o);
    const auto xs = synth::make_inputs(tokens, dm, 78, heavy);
    for (float threshold : {0.0f, 0.1f, -0.3f})
      CHECK(check(*rows_o, wg, xs, tokens, {}, threshold).violations == 0);
  }
}

TEST_CASE("screen: pre-activations within a few ulps of the threshold") {
  const int dm = 512, dff = 512, tokens = 8;
  auto layer = synth::make_layer(dm, dff, true, 0.05, 21);
  const auto x = synth::make_inputs(tokens, dm, 9, {});
  auto rows = screen::build_rows(layer.wg.data(), dff, dm);
  REQUIRE(rows);
  // A bias per neuron that puts token 0's pre-activation at -k ulps .. +k ulps of 0.
  std::vector<float> bias(static_cast<size_t>(dff));
  for (int j = 0; j < dff; ++j) {
    double s = 0;
    for (int c = 0; c < dm; ++c) s += double(bf(x[size_t(c)])) * bf(layer.wg[size_t(j) * dm + c]);
    const float b = bf(float_to_bf16(float(-s)));
    const int k = j % 9 - 4;
    float v = b;
    for (int i = 0; i < std::abs(k); ++i) v = bf(uint16_t(float_to_bf16(v) + (k > 0 ? 1 : -1) * (v >= 0 ? 1 : -1)));
    bias[size_t(j)] = v;
  }
  const Tally t = check(*rows, layer.wg, x, tokens, bias, 0.0f);
  CHECK(t.violations == 0);
  CHECK(t.active > 0);
}

TEST_CASE("screen: exact columns keep the int8 step fine; non-finite values rule nothing out") {
  const int dm = 1024, dff = 512, tokens = 16;
  auto layer = synth::make_layer(dm, dff, true, 0.01, 5);
  const auto x = synth::make_inputs(tokens, dm, 6, {});
  auto with = screen::build_rows(layer.wg.data(), dff, dm);
  screen::Options none;
  none.max_outliers = 0;
  auto without = screen::build_rows(layer.wg.data(), dff, dm, none);
  REQUIRE(with);
  REQUIRE(without);
  const Tally a = check(*with, layer.wg, x, tokens, {}, 0.0f), b = check(*without, layer.wg, x, tokens, {}, 0.0f);
  CHECK(a.violations == 0);
  CHECK(b.violations == 0);
  // The bias column sets every row's step without the exact columns: far fewer ruled out.
  CHECK(a.pairs - a.ruled_out < (b.pairs - b.ruled_out) / 2);
  CHECK(with->bytes() > size_t(dff) * dm);
  // NaN in x: every neuron a candidate. Inf in a row: that row always a candidate.
  auto xn = x;
  xn[5] = 0x7fc0;
  const screen::Token tn = screen::quantize_token(*with, xn.data());
  CHECK_FALSE(tn.finite);
  for (int j = 0; j < dff; j += 37) CHECK(screen::candidate(*with, tn, xn.data(), j, 0.0f, 0.0f));
  auto wg = layer.wg;
  wg[size_t(3) * dm + 7] = 0x7f80;
  auto rows_inf = screen::build_rows(wg.data(), dff, dm);
  REQUIRE(rows_inf);
  const screen::Token t0 = screen::quantize_token(*rows_inf, x.data());
  CHECK(screen::candidate(*rows_inf, t0, x.data(), 3, -1e30f, 0.0f));
  CHECK_FALSE(screen::build_rows(wg.data(), 0, dm));
}

// An fp32 sum can come out above the exact one: 2^20 + 0.09375 rounds up to 2^20 + 0.125,
// so with the bias -0.1 the exact pre-activation is -0.0063 (inactive) and a sequential
// kernel's is +0.025 (active). Here every column is exact (no int8 error at all): only
// the bound's accumulation term keeps the neuron a candidate.
TEST_CASE("screen: the bound covers a kernel's fp32 rounding, not just the int8 error") {
  const std::vector<uint16_t> w = to_bf16({1048576.0f, 0.09375f, -1048576.0f}), x = to_bf16({1.0f, 1.0f, 1.0f});
  screen::Options all_exact;
  all_exact.max_outliers = 3, all_exact.outlier_ratio = 0.0;
  auto rows = screen::build_rows(w.data(), 1, 3, all_exact);
  REQUIRE(rows);
  REQUIRE(rows->outliers.size() == 3);
  const float bias = bf(float_to_bf16(-0.1f));
  const Tally t = check(*rows, w, x, 1, {bias}, 0.0f);
  CHECK(t.active == 1);  // the sequential order fires
  CHECK(t.violations == 0);
  const screen::Token tok = screen::quantize_token(*rows, x.data());
  const auto e = screen::estimate(*rows, tok, x.data(), 0, bias);
  CHECK(e.value < 0.0);  // the exact estimate alone would rule it out
  CHECK(screen::candidate(*rows, tok, x.data(), 0, bias, 0.0f));
}

// `ffnjit profile --screen`'s numbers: candidates cover the active neurons, tokens are
// capped, the exact bias column is found.
TEST_CASE("screen: a layer's report") {
  const int dm = 256, dff = 1024, tokens = 40;
  auto layer = synth::make_layer(dm, dff, true, 0.02, 8);
  const auto x = synth::make_inputs(tokens, dm, 4, {});
  ref::FfnWeights w{layer.wg.data(), layer.wu.data(), layer.wd.data(), dm, dff, true};
  auto r = screen::measure_layer(w, x.data(), tokens, 16);
  REQUIRE(r);
  CHECK(r->tokens == 16);
  CHECK(r->exact_columns == 1);
  CHECK(r->ruled_out_active == 0);
  CHECK(r->active_mean > 0);
  CHECK(r->candidates_mean >= r->active_mean);
  CHECK(r->candidates_mean < 0.2 * dff);
  CHECK(r->candidates_max >= r->candidates_p99);
  CHECK(r->bytes >= size_t(dff) * dm);
  // A bias of -1e30 on every neuron: nothing can fire, the screen proves it for all.
  std::vector<float> off(static_cast<size_t>(dff), -1e30f);
  w.gate_bias = off.data();
  auto none = screen::measure_layer(w, x.data(), tokens, 8);
  REQUIRE(none);
  CHECK(none->candidates_mean == 0.0);
  CHECK(none->active_mean == 0.0);
}
