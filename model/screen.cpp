// The certified int8 gate screen, host reference (screen.hpp; the bound: docs/kernels.md).
#include "model/screen.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "support/bf16.hpp"

namespace ffnjit::screen {
namespace {

// fp32 value >= v (v >= 0): the norms are stored rounded up, so the bound stays a bound.
float round_up(double v) {
  float f = float(v);
  if (double(f) < v) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

// Symmetric int8 with scale absmax / 127: q = round(v / s) in [-127, 127].
float int8_scale(double absmax) { return absmax > 0 ? round_up(absmax / 127.0) : 0.0f; }
int8_t quantize(double v, float s) {
  if (s == 0.0f) return 0;
  return int8_t(std::clamp(std::lround(v / double(s)), -127L, 127L));
}

// Slack of the bound's own evaluation in double: a few roundings of 2^-53 each.
constexpr double kDoubleSlack = 1e-12;
// Relative slack of a double sum of n squares (n roundings of 2^-53), then its sqrt.
double sum_slack(size_t n) { return double(n + 4) * std::ldexp(1.0, -52); }

}  // namespace

double gamma_fp32(int n) {
  const double u = std::ldexp(1.0, -22), nu = double(n) * u;
  return nu / (1.0 - nu);
}

float bf16_floor(float v) {
  const uint16_t b = float_to_bf16(v);
  float f = bf16_to_float(b);
  if (f <= v) return f;
  // Rounded up: the bf16 value below (toward -inf).
  const uint16_t down = (b & 0x8000u) ? uint16_t(b + 1) : (b == 0 ? uint16_t(0x8001u) : uint16_t(b - 1));
  return bf16_to_float(down);
}

size_t Rows::bytes() const {
  return q.size() + exact.size() * 2 + size_t(d_ff) * (4 * sizeof(float) + 1) + outliers.size() * sizeof(int);
}

Expected<Rows> build_rows(const uint16_t* wg, int d_ff, int d_model, const Options& opts) {
  if (d_ff <= 0 || d_model <= 0) return user_error("the screen needs d_ff and d_model > 0");
  // x_q . w_q stays exact in int32: |sum| <= 127 * 127 * d_model < 2^31.
  if (d_model > 131072) return user_error("the int8 screen handles d_model up to 131072");
  Rows r;
  r.d_model = d_model, r.d_ff = d_ff;
  const size_t n = size_t(d_model);
  // Exact columns: the largest column maxima beyond outlier_ratio x the median one.
  if (opts.max_outliers > 0) {
    std::vector<float> col_max(n, 0.0f);
    for (size_t j = 0; j < size_t(d_ff); ++j)
      for (size_t c = 0; c < n; ++c) {
        const float a = std::fabs(bf16_to_float(wg[j * n + c]));
        if (std::isfinite(a)) col_max[c] = std::max(col_max[c], a);
      }
    std::vector<float> sorted = col_max;
    std::nth_element(sorted.begin(), sorted.begin() + long(n / 2), sorted.end());
    const double median = sorted[n / 2];
    std::vector<int> order(n);
    for (size_t c = 0; c < n; ++c) order[c] = int(c);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return col_max[size_t(a)] > col_max[size_t(b)]; });
    for (int c : order) {
      if (int(r.outliers.size()) >= opts.max_outliers || !(col_max[size_t(c)] > opts.outlier_ratio * median)) break;
      r.outliers.push_back(c);
    }
    std::sort(r.outliers.begin(), r.outliers.end());
  }
  std::vector<uint8_t> is_exact(n, 0);
  for (int c : r.outliers) is_exact[size_t(c)] = 1;
  const size_t no = r.outliers.size();
  r.q.assign(size_t(d_ff) * n, 0);
  r.exact.resize(size_t(d_ff) * no);
  r.scale.resize(size_t(d_ff)), r.err_norm.resize(size_t(d_ff)), r.q_norm.resize(size_t(d_ff));
  r.norm.resize(size_t(d_ff)), r.always.assign(size_t(d_ff), 0);
  for (size_t j = 0; j < size_t(d_ff); ++j) {
    const uint16_t* w = wg + j * n;
    double absmax = 0, all = 0;
    bool finite = true;
    for (size_t c = 0; c < n; ++c) {
      const double v = bf16_to_float(w[c]);
      finite &= std::isfinite(v);
      all += v * v;
      if (!is_exact[c]) absmax = std::max(absmax, std::fabs(v));
    }
    for (size_t k = 0; k < no; ++k) r.exact[j * no + k] = w[size_t(r.outliers[k])];
    if (!finite) {
      r.always[j] = 1;
      continue;
    }
    const float s = int8_scale(absmax);
    double err = 0, qn = 0;
    for (size_t c = 0; c < n; ++c) {
      if (is_exact[c]) continue;
      const double v = bf16_to_float(w[c]);
      const int8_t q = quantize(v, s);
      r.q[j * n + c] = q;
      const double what = double(s) * q;
      err += (v - what) * (v - what), qn += what * what;
    }
    // Double sums of squares of n terms: relative error < n 2^-53, covered by the slack.
    r.scale[j] = s;
    r.err_norm[j] = round_up(std::sqrt(err) * (1 + sum_slack(n)));
    r.q_norm[j] = round_up(std::sqrt(qn) * (1 + sum_slack(n)));
    r.norm[j] = round_up(std::sqrt(all) * (1 + sum_slack(n)));
  }
  return r;
}

Token quantize_token(const Rows& rows, const uint16_t* x) {
  Token t;
  const size_t n = size_t(rows.d_model);
  std::vector<uint8_t> is_exact(n, 0);
  for (int c : rows.outliers) is_exact[size_t(c)] = 1;
  double absmax = 0, all = 0;
  for (size_t c = 0; c < n; ++c) {
    const double v = bf16_to_float(x[c]);
    t.finite &= std::isfinite(v);
    all += v * v;
    if (!is_exact[c]) absmax = std::max(absmax, std::fabs(v));
  }
  t.q.assign(n, 0);
  if (!t.finite) return t;
  t.scale = int8_scale(absmax);
  double err = 0, nn = 0;
  for (size_t c = 0; c < n; ++c) {
    if (is_exact[c]) continue;
    const double v = bf16_to_float(x[c]);
    t.q[c] = quantize(v, t.scale);
    const double xhat = double(t.scale) * t.q[c];
    err += (v - xhat) * (v - xhat), nn += v * v;
  }
  t.norm = round_up(std::sqrt(nn) * (1 + sum_slack(n)));
  t.err_norm = round_up(std::sqrt(err) * (1 + sum_slack(n)));
  t.norm_all = round_up(std::sqrt(all) * (1 + sum_slack(n)));
  return t;
}

Estimate estimate(const Rows& rows, const Token& t, const uint16_t* x, int j, float bias) {
  const size_t n = size_t(rows.d_model), no = rows.outliers.size();
  const int8_t* wq = rows.q.data() + size_t(j) * n;
  int32_t dot = 0;  // exact: |dot| <= 127^2 d_model < 2^31
  for (size_t c = 0; c < n; ++c) dot += int32_t(t.q[c]) * int32_t(wq[c]);
  // The exact columns: bf16 products are exact in double, and so is a sum of a few of them.
  double exact = 0, exact_abs = 0;
  for (size_t k = 0; k < no; ++k) {
    const double p = double(bf16_to_float(x[size_t(rows.outliers[k])])) * bf16_to_float(rows.exact[size_t(j) * no + k]);
    exact += p, exact_abs += std::fabs(p);
  }
  Estimate e;
  const double zhat = double(t.scale) * double(rows.scale[size_t(j)]) * double(dot);
  e.value = zhat + exact + double(bias);
  // |x.w - (zhat + exact)| <= ||x|| ||w - what|| + ||x - xhat|| ||what|| over the int8
  // columns (x.w - xhat.what = x.(w - what) + (x - xhat).what, Cauchy-Schwarz twice); the
  // gate kernel's fp32 sum of d_model products and the bias (products of bf16 are exact
  // in fp32) is within gamma(d_model + 1) (sum |x_c w_c| + |b|) <= gamma (||x|| ||w|| +
  // |b|) of x.w + b, in any order.
  const double quant = double(t.norm) * rows.err_norm[size_t(j)] + double(t.err_norm) * rows.q_norm[size_t(j)];
  const double accum = gamma_fp32(rows.d_model + 1) * (double(t.norm_all) * rows.norm[size_t(j)] + std::fabs(bias));
  // Products below fp32's range lose up to 2^-149 each (not relative): n of them.
  const double underflow = double(rows.d_model) * std::ldexp(1.0, -149);
  e.bound = (quant + accum) * (1 + kDoubleSlack) + kDoubleSlack * (std::fabs(zhat) + exact_abs + std::fabs(bias)) +
            underflow;
  return e;
}

bool candidate(const Rows& rows, const Token& t, const uint16_t* x, int j, float bias, float threshold) {
  if (!t.finite || rows.always[size_t(j)] || !std::isfinite(bias) || !std::isfinite(threshold)) return true;
  const Estimate e = estimate(rows, t, x, j, bias);
  // The fp32 gate value v is <= value + bound; v <= c (c a bf16 value <= threshold) gives
  // bf16(v) <= c <= threshold (rounding is monotone and keeps c), so z <= threshold.
  return !(e.value + e.bound <= double(bf16_floor(threshold)));
}

Expected<LayerReport> measure_layer(const ref::FfnWeights& w, const uint16_t* x, int64_t tokens,
                                    int64_t max_tokens, const Options& opts) {
  const uint16_t* gate = w.gated ? w.wg : w.wu;
  const float* bias = w.gated ? w.gate_bias : w.up_bias;
  const float threshold = w.activation == ref::Activation::kFatRelu ? w.threshold : 0.0f;
  auto rows = build_rows(gate, w.d_ff, w.d_model, opts);
  FFNJIT_TRY(rows);
  LayerReport r;
  r.exact_columns = int(rows->outliers.size());
  r.bytes = rows->bytes();
  if (tokens <= 0) return r;
  const int64_t n = std::min(tokens, std::max<int64_t>(1, max_tokens));
  std::vector<int> picked(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) picked[size_t(i)] = int(i * tokens / n);
  std::vector<double> z(size_t(n) * size_t(w.d_ff));
  ref::gate_rows(w, x, picked, z.data());
  std::vector<int> counts;
  double active = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t* xm = x + size_t(picked[size_t(i)]) * size_t(w.d_model);
    const Token t = quantize_token(*rows, xm);
    int cand = 0;
    for (int j = 0; j < w.d_ff; ++j) {
      const bool c = candidate(*rows, t, xm, j, bias ? bias[j] : 0.0f, threshold);
      const bool on = ref::is_active(w, z[size_t(i) * size_t(w.d_ff) + size_t(j)]);
      cand += c, active += on;
      r.ruled_out_active += !c && on;
    }
    counts.push_back(cand);
  }
  r.tokens = n;
  std::sort(counts.begin(), counts.end());
  double sum = 0;
  for (int c : counts) sum += c;
  r.active_mean = active / double(n), r.candidates_mean = sum / double(n);
  r.candidates_p99 = counts[std::min(counts.size() - 1, size_t(double(counts.size()) * 0.99))];
  r.candidates_max = counts.back();
  return r;
}

}  // namespace ffnjit::screen
