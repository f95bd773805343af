// Shared GPU test harness: device, layers, poisoned buffers, reference comparison.
#include "tests/gpu/gpu_harness.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "codegen/compile.hpp"
#include "support/bf16.hpp"
#include "support/rng.hpp"

namespace ffnjit::test {
namespace {

constexpr uint16_t kPoison = 0x7f7f;  // a huge finite bf16: an unwritten element fails the error check

std::vector<int> sample_tokens(int tokens, const std::vector<int>& must) {
  std::vector<int> t;
  if (tokens <= 64) {
    for (int m = 0; m < tokens; ++m) t.push_back(m);
  } else {
    std::mt19937 rng(uint32_t(tokens) * 2654435761u);
    t = {0, 1, tokens / 2, tokens - 2, tokens - 1};
    for (int i = 0; i < 40; ++i) t.push_back(int(rng() % uint32_t(tokens)));
  }
  for (int m : must)
    if (m < tokens) t.push_back(m);
  std::sort(t.begin(), t.end());
  t.erase(std::unique(t.begin(), t.end()), t.end());
  return t;
}

ref::Activation ref_activation(Activation a) {
  return a == Activation::kRelu2     ? ref::Activation::kRelu2
         : a == Activation::kFatRelu ? ref::Activation::kFatRelu
                                     : ref::Activation::kRelu;
}

// The fp64 reference outputs and gates of the checked tokens, computed once per layer,
// input and threshold: the pipeline sweeps run many configs on the same x.
const RefMemo& reference(const DeviceLayer& layer, const std::vector<uint16_t>& x, const std::vector<int>& check) {
  RefMemo& m = layer.memo;
  if (m.x != x || m.check != check || m.threshold != layer.threshold) {
    const synth::Layer& L = layer.host;
    m.x = x, m.check = check, m.threshold = layer.threshold;
    m.out.assign(check.size() * L.d_model, 0.0);
    m.gates.assign(check.size() * L.d_ff, 0.0);
    ref::ffn_forward(layer.reference(), x.data(), check, m.out.data());
    ref::gate_rows(layer.reference(), x.data(), check, m.gates.data());
  }
  return m;
}

double error_of(const std::vector<double>& ref, const std::vector<uint16_t>& out, int dm,
                const std::vector<int>& check) {
  double num = 0, den = 0;
  for (size_t i = 0; i < check.size(); ++i)
    for (int d = 0; d < dm; ++d) {
      const double want = ref[i * dm + d], got = bf16_to_float(out[size_t(check[i]) * dm + d]);
      if (!std::isfinite(want) || !std::isfinite(got)) return INFINITY;
      num += (got - want) * (got - want), den += want * want;
    }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

void compare(const DeviceLayer& layer, const std::vector<uint16_t>& x, const std::vector<uint16_t>& out, int tokens,
             const std::vector<int>& check, CaseResult& r) {
  const int dm = layer.host.d_model;
  for (size_t i = 0; i < size_t(tokens) * dm; ++i) r.unwritten += out[i] == kPoison;
  const std::vector<double>& ref = reference(layer, x, check).out;
  double num = 0, den = 0;
  for (size_t i = 0; i < check.size(); ++i) {
    double tn = 0, td = 0;
    for (int d = 0; d < dm; ++d) {
      const double want = ref[i * dm + d];
      const double got = bf16_to_float(out[size_t(check[i]) * dm + d]);
      if (!std::isfinite(want)) {
        r.finite_unexpected += std::isfinite(got);
        continue;
      }
      if (!std::isfinite(got)) {
        ++r.nonfinite_unexpected;
        continue;
      }
      tn += (got - want) * (got - want);
      td += want * want;
    }
    num += tn, den += td;
    const double te = td > 0 ? std::sqrt(tn / td) : std::sqrt(tn);
    r.worst_token_error = std::max(r.worst_token_error, te);
  }
  r.rel_error = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  r.checked_tokens = int(check.size());
}

// The TwELL of each checked token must hold, per tile, the neurons whose fp64 gate is
// clearly positive (and possibly ones within rounding of 0), in increasing order.
std::string check_twell(const DeviceLayer& layer, const SparseFfnConfig& cfg, const std::vector<uint16_t>& x,
                        const std::vector<uint32_t>& counts, const std::vector<uint32_t>& entries,
                        const std::vector<int>& check) {
  const synth::Layer& L = layer.host;
  const int nt = cfg.gate.n_tiles(), tn = cfg.gate.sparsity.tile_n, cap = cfg.gate.sparsity.capacity;
  const std::vector<double>& gates = reference(layer, x, check).gates;
  for (size_t ci = 0; ci < check.size(); ++ci) {
    const int m = check[ci];
    const uint16_t* row = x.data() + size_t(m) * L.d_model;
    bool finite = true;
    for (int k = 0; k < L.d_model; ++k) finite &= std::isfinite(bf16_to_float(row[k]));
    if (!finite) continue;
    const double* g = gates.data() + ci * L.d_ff;
    double scale = 0;
    for (int j = 0; j < L.d_ff; ++j) scale = std::max(scale, std::fabs(g[j]));
    const double eps = 1e-2 * scale + 1e-6;
    const ref::FfnWeights rw = layer.reference();
    const double edge = rw.activation == ref::Activation::kFatRelu ? rw.threshold : 0.0;
    const bool squared = rw.activation == ref::Activation::kRelu2;
    // After an up kernel the entries hold h = g * (x . Wu[j]) instead of g, except in
    // tiles over capacity (the down kernel recomputes those from the weights).
    const bool up_ran = cfg.split_up_down() && L.gated;
    auto up_dot = [&](int j) {
      double u = layer.up_bias.empty() || !L.gated ? 0.0 : layer.up_bias[j];
      for (int k = 0; k < L.d_model; ++k)
        u += double(bf16_to_float(row[k])) * bf16_to_float(L.wu[size_t(j) * L.d_model + k]);
      return u;
    };
    for (int t = 0; t < nt; ++t) {
      int sure = 0, maybe = 0;
      for (int c = 0; c < tn && t * tn + c < L.d_ff; ++c) {
        sure += g[t * tn + c] > edge + eps;
        maybe += g[t * tn + c] > edge - eps;
      }
      const uint32_t count = counts[size_t(m) * nt + t];
      std::ostringstream why;
      why << "token " << m << " tile " << t << ": ";
      if (int(count) < sure || int(count) > maybe) {
        why << "count " << count << " outside [" << sure << ", " << maybe << "]";
        return why.str();
      }
      int last = -1;
      const bool holds_h = up_ran && count <= uint32_t(cap);
      for (uint32_t e = 0; e < std::min<uint32_t>(count, cap); ++e) {
        const uint32_t entry = entries[(size_t(m) * nt + t) * cap + e];
        const int c = int(entry & 0xffff);
        if (c <= last || c >= tn) {
          why << "entry " << e << " index " << c << " out of order";
          return why.str();
        }
        const double gate = g[t * tn + c], got = bf16_to_float(uint16_t(entry >> 16));
        if (gate < edge - eps) {
          why << "entry " << e << " neuron " << c << " has gate " << gate;
          return why.str();
        }
        const double u = holds_h ? up_dot(t * tn + c) : 1.0;
        // act(bf16 gate), and for h one more bf16 rounding; relu2 doubles the relative error.
        const double dz = 1e-2 * std::fabs(gate) + eps;
        const double a = squared ? gate * gate : gate,
                     da = squared ? 2 * std::fabs(gate) * dz + dz * dz : dz;
        const double want = a * u,
                     tol = (da + 1e-2 * std::fabs(a)) * std::fabs(u) * (holds_h ? 2 : 1);
        if (std::fabs(got - want) > tol) {
          why << "entry " << e << " neuron " << c << " holds " << got << ", expected " << want;
          return why.str();
        }
        last = c;
      }
    }
  }
  return "";
}

#define CASE_TRY(expr)                          \
  do {                                          \
    auto&& s_ = (expr);                         \
    if (!s_) {                                  \
      r.error = ::ffnjit::as_status(s_).message(); \
      return r;                                 \
    }                                           \
  } while (0)

}  // namespace

Gpu* gpu(std::string* why) {
  static std::string reason;
  static std::unique_ptr<Gpu> g = [] {
    auto dev = Device::open(0);
    if (!dev) {
      reason = dev.error().message;
      return std::unique_ptr<Gpu>();
    }
    auto out = std::make_unique<Gpu>();
    out->device = std::make_unique<Device>(std::move(*dev));
    out->arch = *parse_arch(out->device->info().arch);
    if (out->device->api()->cuStreamCreate(&out->stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS) {
      reason = "cuStreamCreate failed";
      return std::unique_ptr<Gpu>();
    }
    return out;
  }();
  if (!g && why) *why = reason;
  return g.get();
}

ref::FfnWeights DeviceLayer::reference() const {
  auto b = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
  const synth::Layer& L = host;
  return {L.gated ? L.wg.data() : nullptr,
          L.wu.data(),
          L.wd.data(),
          L.d_model,
          L.d_ff,
          L.gated,
          b(gate_bias),
          b(up_bias),
          b(down_bias),
          ref_activation(shape.activation),
          threshold};
}

Gpu* need_gpu() {
  std::string why;
  Gpu* g = gpu(&why);
  if (!g) std::printf("[SKIP] no GPU: %s\n", why.c_str());
  return g;
}

std::unique_ptr<DeviceLayer> upload_layer(Gpu& g, synth::Layer layer, const LayerMath& math,
                                          uint64_t bias_seed) {
  auto out = std::make_unique<DeviceLayer>();
  out->shape = LayerShape{layer.d_model, layer.d_ff, layer.gated, DType::kBF16};
  out->shape.activation = math.activation;
  out->shape.gate_bias = math.gate_bias && layer.gated, out->shape.up_bias = math.up_bias;
  out->shape.down_bias = math.down_bias;
  out->host = std::move(layer);
  const synth::Layer& L = out->host;
  SplitMix64 rng{bias_seed};
  auto draw = [&](int n, double sigma) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& b : v) b = bf16_to_float(float_to_bf16(float(rng.normal() * sigma)));
    return v;
  };
  // The gate projection's bias moves pre-activations by ~0.25 of their spread (sparsity
  // stays near the layer's); a gated layer's up bias is half of u's spread.
  if (out->shape.gate_bias) out->gate_bias = draw(L.d_ff, 0.25);
  if (out->shape.up_bias) out->up_bias = draw(L.d_ff, L.gated ? 0.5 : 0.25);
  if (out->shape.down_bias) {
    // As large as the bias-free output, so that dropping it (or doubling it) is an error
    // far above the tolerance while the sparse part still dominates half of it.
    const std::vector<int> probe = {0, 1, 2, 3};
    const auto xp = synth::make_inputs(4, L.d_model, bias_seed + 1);
    std::vector<double> y(probe.size() * L.d_model);
    ref::ffn_forward(out->reference(), xp.data(), probe, y.data());
    double ss = 0;
    for (double v : y) ss += v * v;
    out->down_bias = draw(L.d_model, std::max(1e-2, std::sqrt(ss / double(y.size()))));
  }
  auto f = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
  HostFfnWeights host{L.gated ? L.wg.data() : nullptr,
                      L.wu.data(),
                      L.wd.data(),
                      out->shape,
                      f(out->gate_bias),
                      f(out->up_bias),
                      f(out->down_bias),
                      0.0f};
  auto w = DeviceWeights::upload(g.kernels, g.arch, host, g.stream, /*with_dense=*/true);
  if (!w) throw std::runtime_error(w.error().message);
  out->device = std::move(*w);
  return out;
}

std::vector<int> checked_tokens(int tokens, const std::vector<int>& must_check) {
  return sample_tokens(tokens, must_check);
}

float choose_threshold(const DeviceLayer& layer, const std::vector<uint16_t>& x, int tokens,
                       const std::vector<int>& must_check) {
  const std::vector<int> check = sample_tokens(tokens, must_check);
  std::vector<double> z(check.size() * size_t(layer.host.d_ff));
  ref::gate_rows(layer.reference(), x.data(), check, z.data());
  std::vector<double> pos;
  for (double v : z)
    if (v > 0 && std::isfinite(v)) pos.push_back(v);
  std::sort(pos.begin(), pos.end());
  std::sort(z.begin(), z.end());
  float t = bf16_to_float(float_to_bf16(pos.empty() ? 0.5f : float(pos[pos.size() / 2])));
  for (int tries = 0; tries < 256; ++tries) {
    // bf16(v) > t exactly when v is above the midpoint between t and the next bf16 value.
    uint16_t tb = float_to_bf16(t);
    const double next = bf16_to_float(uint16_t(tb + 1)), edge = (double(t) + next) / 2;
    const double margin = 1e-4 * edge + 1e-6;
    const auto lo = std::lower_bound(z.begin(), z.end(), edge - margin);
    if (lo == z.end() || *lo > edge + margin) return t;
    t = float(next);
  }
  return t;  // (not reached with real data) the last candidate
}

double relative_error(const ref::FfnWeights& w, const std::vector<uint16_t>& x,
                      const std::vector<uint16_t>& out, int tokens,
                      const std::vector<int>& must_check) {
  const std::vector<int> check = sample_tokens(tokens, must_check);
  std::vector<double> ref(check.size() * size_t(w.d_model));
  ref::ffn_forward(w, x.data(), check, ref.data());
  return error_of(ref, out, w.d_model, check);
}

void precompile(Gpu& g, const std::vector<KernelSpec>& specs) {
  static std::set<std::string> done;
  std::vector<KernelSpec> todo;
  for (const auto& s : specs)
    if (done.insert(s.canonical()).second) todo.push_back(s);
  // NVRTC on worker threads; loading (which needs the device context current) here.
  std::vector<std::optional<CompiledKernel>> compiled(todo.size());
  std::mutex mu;
  size_t next = 0;
  std::string first_error;
  auto work = [&] {
    while (true) {
      size_t i;
      {
        std::lock_guard<std::mutex> l(mu);
        if (next == todo.size()) return;
        i = next++;
      }
      auto src = generate_source(todo[i]);
      auto k = src ? compile(*src) : Expected<CompiledKernel>(src.error());
      std::lock_guard<std::mutex> l(mu);
      if (k)
        compiled[i] = std::move(*k);
      else if (first_error.empty())
        first_error = todo[i].kernel_name() + ": " + k.error().message;
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < std::max(1u, std::thread::hardware_concurrency()); ++t)
    pool.emplace_back(work);
  for (auto& t : pool) t.join();
  if (!first_error.empty()) throw std::runtime_error("precompile: " + first_error);
  if (Status s = g.device->make_current(); !s) throw std::runtime_error(s.message());
  for (size_t i = 0; i < todo.size(); ++i)
    if (auto a = g.kernels.add(todo[i], *compiled[i]); !a)
      throw std::runtime_error(a.error().message);
}

bool CaseResult::ok(double tol) const {
  return error.empty() && rel_error <= tol && worst_token_error <= 2 * tol && unwritten == 0 &&
         nonfinite_unexpected == 0 && finite_unexpected == 0 && twell_problem.empty();
}

std::string CaseResult::describe() const {
  std::ostringstream o;
  if (!error.empty()) return "run failed: " + error;
  o << "rel_error=" << rel_error << " worst_token=" << worst_token_error << " unwritten=" << unwritten
    << " nonfinite_unexpected=" << nonfinite_unexpected << " finite_unexpected=" << finite_unexpected
    << " checked=" << checked_tokens << " overflow=" << overflow;
  if (!twell_problem.empty()) o << " twell: " << twell_problem;
  return o.str();
}

CaseResult run_sparse_case(Gpu& g, const DeviceLayer& layer, const SparseFfnConfig& cfg,
                           const std::vector<uint16_t>& x, int tokens, const std::vector<int>& must_check,
                           std::vector<uint16_t>* out_copy) {
  CaseResult r;
  const int dm = layer.host.d_model;
  auto dx = DeviceBuffer::alloc(size_t(tokens) * dm * 2);
  CASE_TRY(dx);
  auto dout = DeviceBuffer::alloc(size_t(tokens) * dm * 2);
  CASE_TRY(dout);
  const size_t ws_bytes = sparse_workspace_bytes(cfg, tokens);
  auto ws = DeviceBuffer::alloc(ws_bytes);
  CASE_TRY(ws);
  CASE_TRY(dx->upload(x.data(), x.size() * 2));
  CASE_TRY(dout->fill_bytes(0x7f));
  CASE_TRY(ws->fill_bytes(0xff));  // kernels must not rely on zeroed workspace
  CASE_TRY(sparse_ffn_forward(g.kernels, cfg, layer.weights(), dx->ptr(), dout->ptr(), tokens, ws->ptr(), g.stream));
  const drv::Api* cu = g.device->api();
  if (CUresult e = cu->cuStreamSynchronize(g.stream); e != CUDA_SUCCESS) {
    r.error = "forward failed: " + drv::result_name(e);
    return r;
  }
  std::vector<uint16_t> out(size_t(tokens) * dm);
  CASE_TRY(dout->download(out.data(), out.size() * 2));
  CASE_TRY(ws->download(&r.overflow, 4, overflow_counter_offset(cfg, tokens)));
  const auto check = sample_tokens(tokens, must_check);
  compare(layer, x, out, tokens, check, r);
  const size_t nt = size_t(cfg.gate.n_tiles());
  std::vector<uint32_t> counts(size_t(tokens) * nt), entries(size_t(tokens) * nt * cfg.gate.sparsity.capacity);
  CASE_TRY(ws->download(counts.data(), counts.size() * 4, 0));
  const size_t entries_offset = (counts.size() * 4 + 255) & ~size_t(255);
  CASE_TRY(ws->download(entries.data(), entries.size() * 4, entries_offset));
  r.twell_problem = check_twell(layer, cfg, x, counts, entries, check);
  if (out_copy) *out_copy = std::move(out);
  return r;
}

CaseResult run_dense_case(Gpu& g, const DeviceLayer& layer, const std::vector<uint16_t>& x,
                          int tokens, std::vector<uint16_t>* out_copy) {
  CaseResult r;
  const int dm = layer.host.d_model;
  auto dense = DenseFfn::create(g.kernels, g.arch, layer.shape);
  CASE_TRY(dense);
  auto dx = DeviceBuffer::alloc(size_t(tokens) * dm * 2);
  CASE_TRY(dx);
  auto dout = DeviceBuffer::alloc(size_t(tokens) * dm * 2);
  CASE_TRY(dout);
  auto ws = DeviceBuffer::alloc((*dense)->workspace_bytes(tokens));
  CASE_TRY(ws);
  CASE_TRY(dx->upload(x.data(), x.size() * 2));
  CASE_TRY(dout->fill_bytes(0x7f));
  CASE_TRY((*dense)->forward(layer.dense_weights(), dx->ptr(), dout->ptr(), tokens, ws->ptr(), g.stream));
  if (CUresult e = g.device->api()->cuStreamSynchronize(g.stream); e != CUDA_SUCCESS) {
    r.error = "dense forward failed: " + drv::result_name(e);
    return r;
  }
  std::vector<uint16_t> out(size_t(tokens) * dm);
  CASE_TRY(dout->download(out.data(), out.size() * 2));
  compare(layer, x, out, tokens, sample_tokens(tokens, {}), r);
  if (out_copy) *out_copy = std::move(out);
  return r;
}

}  // namespace ffnjit::test
