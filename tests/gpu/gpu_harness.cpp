// Shared GPU test harness: device, layers, poisoned buffers, reference comparison.
#include "tests/gpu/gpu_harness.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <sstream>

#include "support/bf16.hpp"

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

ref::FfnWeights ref_weights(const synth::Layer& L) {
  return {L.gated ? L.wg.data() : nullptr, L.wu.data(), L.wd.data(), L.d_model, L.d_ff, L.gated};
}

// The fp64 reference outputs and gates of the checked tokens, computed once per layer
// and input: the pipeline sweeps run many configs on the same x.
const RefMemo& reference(const DeviceLayer& layer, const std::vector<uint16_t>& x, const std::vector<int>& check) {
  RefMemo& m = layer.memo;
  if (m.x != x || m.check != check) {
    const synth::Layer& L = layer.host;
    m.x = x, m.check = check;
    m.out.assign(check.size() * L.d_model, 0.0);
    m.gates.assign(check.size() * L.d_ff, 0.0);
    ref::ffn_forward(ref_weights(L), x.data(), check, m.out.data());
    ref::gate_rows(ref_weights(L), x.data(), check, m.gates.data());
  }
  return m;
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
    // After an up kernel the entries hold h = g * (x . Wu[j]) instead of g, except in
    // tiles over capacity (the down kernel recomputes those from the weights).
    const bool up_ran = cfg.split_up_down() && L.gated;
    auto up_dot = [&](int j) {
      double u = 0;
      for (int k = 0; k < L.d_model; ++k)
        u += double(bf16_to_float(row[k])) * bf16_to_float(L.wu[size_t(j) * L.d_model + k]);
      return u;
    };
    for (int t = 0; t < nt; ++t) {
      int sure = 0, maybe = 0;
      for (int c = 0; c < tn && t * tn + c < L.d_ff; ++c) {
        sure += g[t * tn + c] > eps;
        maybe += g[t * tn + c] > -eps;
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
        if (gate < -eps) {
          why << "entry " << e << " neuron " << c << " has gate " << gate;
          return why.str();
        }
        const double u = holds_h ? up_dot(t * tn + c) : 1.0;
        // bf16 gate, and for h one more bf16 rounding.
        const double want = gate * u, tol = (1e-2 * std::fabs(gate) + eps) * std::fabs(u) * (holds_h ? 2 : 1);
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

std::unique_ptr<DeviceLayer> upload_layer(Gpu& g, synth::Layer layer) {
  const LayerShape shape{layer.d_model, layer.d_ff, layer.gated, DType::kBF16};
  HostFfnWeights host{layer.gated ? layer.wg.data() : nullptr, layer.wu.data(), layer.wd.data(), shape};
  auto w = DeviceWeights::upload(g.kernels, g.arch, host, g.stream, /*with_dense=*/true);
  if (!w) throw std::runtime_error(w.error().message);
  return std::unique_ptr<DeviceLayer>(new DeviceLayer{std::move(layer), std::move(*w)});
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

CaseResult run_dense_case(Gpu& g, const DeviceLayer& layer, const std::vector<uint16_t>& x, int tokens) {
  CaseResult r;
  const int dm = layer.host.d_model;
  const LayerShape shape{dm, layer.host.d_ff, layer.host.gated, DType::kBF16};
  auto dense = DenseFfn::create(g.kernels, g.arch, shape);
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
  return r;
}

}  // namespace ffnjit::test
