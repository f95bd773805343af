// The sparse-vs-dense benchmark behind `ffnjit bench`.
#include "tuner/bench.hpp"

#include <cmath>

#include "model/synthetic.hpp"
#include "runtime/device_weights.hpp"
#include "support/bf16.hpp"
#include "tuner/search.hpp"

namespace ffnjit {
namespace {

double rel_diff(const std::vector<uint16_t>& a, const std::vector<uint16_t>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = bf16_to_float(a[i]), y = bf16_to_float(b[i]);
    num += (x - y) * (x - y);
    den += y * y;
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

std::string pipeline_name(const SparseFfnConfig& cfg) {
  std::string n = cfg.gemm_gate() ? "cuBLASLt GEMM" : "";
  for (const auto& s : cfg.kernel_specs()) n += (n.empty() ? "" : " + ") + s.kernel_name();
  return n;
}

// What one sparse configuration needs to run on the bench's layer and inputs.
struct SparseRun {
  const Device& dev;
  CUstream stream;
  KernelTable& kernels;
  FfnDeviceWeights w;
  CUdeviceptr x;
  const DeviceBuffer& out;
  int tokens;
  const std::vector<uint16_t>& reference;  // the dense output
};

// Times `cfg`'s full forward (`part`: the gate or up/down alone) after checking its
// output against the dense one; an error for kernels that spill or disagree.
Expected<Timing> time_candidate(const SparseRun& r, const SparseFfnConfig& cfg, const MeasureOptions& mo,
                                int part = 0) {
  for (const auto& spec : cfg.kernel_specs()) {
    auto k = r.kernels.get(spec);
    FFNJIT_TRY(k);
    if ((*k)->resources.spills()) return internal_error(spec.kernel_name() + " spills");
  }
  auto ws = DeviceBuffer::alloc(sparse_workspace_bytes(cfg, r.tokens));
  FFNJIT_TRY(ws);
  FFNJIT_TRY(sparse_ffn_forward(r.kernels, cfg, r.w, r.x, r.out.ptr(), r.tokens, ws->ptr(), r.stream));
  const drv::Api* cu = r.dev.api();
  FFNJIT_CU(cuStreamSynchronize(r.stream));
  std::vector<uint16_t> got(r.reference.size());
  FFNJIT_TRY(r.out.download(got.data(), got.size() * 2));
  if (!(rel_diff(got, r.reference) <= 1e-2)) return internal_error(pipeline_name(cfg) + " disagrees with dense");
  return measure_graph(r.dev, r.stream, [&](CUstream s) {
    if (part == 1) return sparse_ffn_gate(r.kernels, cfg, r.w, r.x, r.tokens, ws->ptr(), s);
    if (part == 2) return sparse_ffn_up_down(r.kernels, cfg, r.w, r.x, r.out.ptr(), r.tokens, ws->ptr(), s);
    return sparse_ffn_forward(r.kernels, cfg, r.w, r.x, r.out.ptr(), r.tokens, ws->ptr(), s);
  }, mo);
}

// The tuner's search (tuner/tune.cpp) on the bench's layer, per TwELL format: gates
// timed alone behind the default up/down, up/down variants behind the best gate, then
// the pair's full forward. Returns the fastest pair and how many configs it timed.
Expected<std::pair<SparseFfnConfig, int>> tuned_config(const SparseRun& r, const LayerShape& shape, Arch arch,
                                                       MeasureOptions mo) {
  mo.samples = std::min(mo.samples, 7);  // screening; the winner is re-timed in full
  const BatchBucket b{r.tokens, r.tokens};
  const SparseFfnConfig def = default_sparse_config(shape, arch, b);
  auto make = [&](const KernelSpec& gate, const KernelSpec& up_down) {
    SparseFfnConfig c = def;
    c.gate = gate, c.up_down = up_down;
    c.up = default_spec(Family::kUp, shape, arch, b, gate.sparsity);
    return c;
  };
  SparseFfnConfig best = def;
  double best_us = INFINITY;
  int timed = 0;
  for (const Sparsity& f : format_candidates(def.gate.sparsity, b, false)) {
    const auto gates = gate_candidates(shape, arch, b, f);
    const auto ups = up_down_candidates(shape, arch, b, f);
    KernelSpec gate = gates[0];
    double gate_us = INFINITY;
    for (const auto& g : gates) {
      auto t = time_candidate(r, make(g, ups[0]), mo, 1);
      timed += bool(t);
      if (t && t->median_us < gate_us) gate_us = t->median_us, gate = g;
    }
    KernelSpec up_down = ups[0];
    double up_down_us = INFINITY;
    for (const auto& u : ups) {
      auto t = time_candidate(r, make(gate, u), mo, 2);
      timed += bool(t);
      if (t && t->median_us < up_down_us) up_down_us = t->median_us, up_down = u;
    }
    auto t = time_candidate(r, make(gate, up_down), mo);
    FFNJIT_TRY(t);
    if (t->median_us < best_us) best_us = t->median_us, best = make(gate, up_down);
  }
  return std::pair{best, timed};
}

}  // namespace

Expected<std::vector<BenchRow>> run_bench(const BenchOptions& o,
                                          const std::function<void(const BenchRow&, int, int)>& progress) {
  auto dev = Device::open(o.device);
  FFNJIT_TRY(dev);
  const drv::Api* cu = dev->api();
  auto arch = parse_arch(dev->info().arch);
  FFNJIT_TRY(arch);
  CUstream stream = nullptr;
  FFNJIT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  KernelTable kernels;
  const LayerShape shape{o.d_model, o.d_ff, o.gated, DType::kBF16};
  auto dense = DenseFfn::create(kernels, *arch, shape);
  FFNJIT_TRY(dense);

  int max_tokens = 1;
  for (int t : o.tokens) max_tokens = std::max(max_tokens, t);
  synth::InputOptions in;
  if (o.heavy) in.heavy_fraction = 0.1, in.heavy_scale = 1.6f;
  const auto x_host = synth::make_inputs(max_tokens, o.d_model, 2024, in);
  auto x = DeviceBuffer::alloc(x_host.size() * 2);
  FFNJIT_TRY(x);
  FFNJIT_TRY(x->upload(x_host.data(), x_host.size() * 2));
  auto out_dense = DeviceBuffer::alloc(x_host.size() * 2);
  FFNJIT_TRY(out_dense);
  auto out_sparse = DeviceBuffer::alloc(x_host.size() * 2);
  FFNJIT_TRY(out_sparse);

  std::vector<BenchRow> rows;
  const int total = int(o.k.size() * o.tokens.size());
  for (int k : o.k) {
    auto layer = synth::make_layer(o.d_model, o.d_ff, o.gated, double(k) / o.d_ff, 7 + k);
    HostFfnWeights hw{o.gated ? layer.wg.data() : nullptr, layer.wu.data(), layer.wd.data(), shape};
    auto weights = DeviceWeights::upload(kernels, *arch, hw, stream, /*with_dense=*/true);
    FFNJIT_TRY(weights);
    for (int m : o.tokens) {
      BenchRow row;
      row.tokens = m, row.k = k;
      auto ws_dense = DeviceBuffer::alloc((*dense)->workspace_bytes(m));
      FFNJIT_TRY(ws_dense);
      auto run_dense = [&](CUstream s) {
        return (*dense)->forward(weights->dense(), x->ptr(), out_dense->ptr(), m, ws_dense->ptr(), s);
      };
      // A layer's own overflow counter, as the C API serves it (no memset node per forward).
      auto overflow_counter = DeviceBuffer::alloc(4);
      FFNJIT_TRY(overflow_counter);
      FfnDeviceWeights sparse_w = weights->sparse();
      sparse_w.overflow_counter = overflow_counter->ptr();

      SparseFfnConfig cfg = default_sparse_config(shape, *arch, m);
      if (o.tuned) {
        FFNJIT_TRY(run_dense(stream));
        FFNJIT_CU(cuStreamSynchronize(stream));
        std::vector<uint16_t> reference(size_t(m) * o.d_model);
        FFNJIT_TRY(out_dense->download(reference.data(), reference.size() * 2));
        const SparseRun r{*dev, stream, kernels, sparse_w, x->ptr(), *out_sparse, m, reference};
        auto t = tuned_config(r, shape, *arch, o.measure);
        FFNJIT_TRY(t);
        cfg = t->first, row.candidates = t->second;
      }
      row.sparse_kernels = pipeline_name(cfg);
      auto ws_sparse = DeviceBuffer::alloc(sparse_workspace_bytes(cfg, m));
      FFNJIT_TRY(ws_sparse);
      auto run_sparse = [&](CUstream s) {
        return sparse_ffn_forward(kernels, cfg, sparse_w, x->ptr(), out_sparse->ptr(), m, ws_sparse->ptr(), s);
      };
      auto td = measure_graph(*dev, stream, run_dense, o.measure);
      FFNJIT_TRY(td);
      auto ts = measure_graph(*dev, stream, run_sparse, o.measure);
      FFNJIT_TRY(ts);
      row.dense = *td, row.sparse = *ts;
      // Tuned: ffnjit serves the dense path where it is as fast (as `ffnjit tune` records).
      if (o.tuned && !(ts->median_us < td->median_us)) row.sparse = *td, row.sparse_kernels = "dense fallback";
      row.ratio = td->median_us / row.sparse.median_us;

      // One more forward from a zeroed counter gives this batch's overflow.
      FFNJIT_TRY(overflow_counter->fill_bytes(0));
      FFNJIT_TRY(run_sparse(stream));
      FFNJIT_CU(cuStreamSynchronize(stream));
      std::vector<uint16_t> a(size_t(m) * o.d_model), b(a.size());
      FFNJIT_TRY(out_sparse->download(a.data(), a.size() * 2));
      FFNJIT_TRY(out_dense->download(b.data(), b.size() * 2));
      row.rel_diff = rel_diff(a, b);
      const size_t nt = size_t(cfg.gate.n_tiles());
      std::vector<uint32_t> counts(size_t(m) * nt);
      uint32_t overflow = 0;
      FFNJIT_TRY(ws_sparse->download(counts.data(), counts.size() * 4));
      FFNJIT_TRY(overflow_counter->download(&overflow, 4));
      double nnz = 0;
      for (uint32_t c : counts) nnz += c;
      row.measured_k = nnz / m;
      row.overflow_rate = double(overflow) / double(counts.size());
      rows.push_back(row);
      if (progress) progress(row, int(rows.size()), total);
    }
  }
  cu->cuStreamDestroy(stream);
  return rows;
}

}  // namespace ffnjit
