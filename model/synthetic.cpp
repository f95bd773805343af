// Synthetic layers and inputs with controlled sparsity, for tests and benchmarks.
#include "model/synthetic.hpp"

#include <cmath>

#include "support/bf16.hpp"
#include "support/rng.hpp"

namespace ffnjit::synth {
namespace {

using Rng = SplitMix64;

// Inverse of the standard normal CDF's upper tail: the z with P(Z > z) = p (Acklam's approximation).
double upper_quantile(double p) {
  if (p <= 0) return 40.0;
  if (p >= 1) return -40.0;
  const double q = 1.0 - p;
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  auto tail = [&](double pp) {
    double t = std::sqrt(-2 * std::log(pp));
    return (((((c[0] * t + c[1]) * t + c[2]) * t + c[3]) * t + c[4]) * t + c[5]) /
           ((((d[0] * t + d[1]) * t + d[2]) * t + d[3]) * t + 1);
  };
  if (q < 0.02425) return tail(q);
  if (q > 1 - 0.02425) return -tail(1 - q);
  double r = q - 0.5, s = r * r;
  return (((((a[0] * s + a[1]) * s + a[2]) * s + a[3]) * s + a[4]) * s + a[5]) * r /
         (((((b[0] * s + b[1]) * s + b[2]) * s + b[3]) * s + b[4]) * s + 1);
}

// Gate weights have std 1/sqrt(d_model), so a projection of unit-variance features
// is ~N(0, 1) (over d_model - 1 features); the bias sets the firing probability.
float weight_std(int d_model) { return 1.0f / std::sqrt(float(d_model)); }

}  // namespace

void set_active_fraction(Layer& L, double active_fraction) {
  std::vector<uint16_t>& wg = L.gated ? L.wg : L.wu;
  const double spread = std::sqrt(double(L.d_model - 1) / L.d_model);
  const float bias = float(upper_quantile(active_fraction) * spread);
  for (int j = 0; j < L.d_ff; ++j) wg[size_t(j) * L.d_model] = float_to_bf16(-bias);
}

void force_active(Layer& L, int first, int count) {
  std::vector<uint16_t>& wg = L.gated ? L.wg : L.wu;
  for (int j = first; j < first + count && j < L.d_ff; ++j) wg[size_t(j) * L.d_model] = float_to_bf16(64.0f);
}

Layer make_layer(int d_model, int d_ff, bool gated, double active_fraction, uint64_t seed) {
  Layer L;
  L.d_model = d_model, L.d_ff = d_ff, L.gated = gated;
  Rng rng{seed};
  const float s = weight_std(d_model);
  auto fill = [&](std::vector<uint16_t>& w, size_t n, float scale) {
    w.resize(n);
    for (auto& v : w) v = float_to_bf16(rng.unit() * scale);
  };
  if (gated) fill(L.wg, size_t(d_ff) * d_model, s);
  fill(L.wu, size_t(d_ff) * d_model, s);
  fill(L.wd, size_t(d_model) * d_ff, 1.0f / std::sqrt(float(d_ff)));
  set_active_fraction(L, active_fraction);
  return L;
}

std::vector<uint16_t> make_inputs(int tokens, int d_model, uint64_t seed, const InputOptions& opts) {
  std::vector<uint16_t> x(size_t(tokens) * d_model);
  Rng rng{seed ^ 0x5eedull};
  for (int m = 0; m < tokens; ++m) {
    const bool heavy = opts.heavy_fraction > 0 && double(rng.next() >> 11) * 0x1.0p-53 < opts.heavy_fraction;
    const float scale = heavy ? opts.heavy_scale : 1.0f;
    uint16_t* row = x.data() + size_t(m) * d_model;
    row[0] = float_to_bf16(1.0f);
    for (int k = 1; k < d_model; ++k) row[k] = float_to_bf16(rng.unit() * scale);
  }
  return x;
}

}  // namespace ffnjit::synth
