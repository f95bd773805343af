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

// `ffnjit tune`'s search (search_sparse) on the bench's layer, each candidate checked
// against the dense output (`reference`) before it is timed.
Expected<SparseFfnConfig> tuned_config(const Device& dev, CUstream stream, KernelTable& kernels, const LayerShape& shape,
                                       Arch arch, const FfnDeviceWeights& w, CUdeviceptr x, const DeviceBuffer& out,
                                       int tokens, const std::vector<uint16_t>& reference, MeasureOptions mo) {
  mo.samples = std::min(mo.samples, 7);  // screening; the winner is re-timed in full
  const BatchBucket b{tokens, tokens};
  const auto formats = format_candidates(default_sparse_config(shape, arch, b).gate.sparsity, b, false);
  const SearchResult found = search_sparse(
      shape, arch, b, formats, [&](const SparseFfnConfig& cfg, SearchStage stage) -> Expected<Timing> {
        for (const auto& spec : cfg.kernel_specs()) {
          auto k = kernels.get(spec);
          FFNJIT_TRY(k);
          if ((*k)->resources.spills()) return internal_error(spec.kernel_name() + " spills");
        }
        auto ws = DeviceBuffer::alloc(sparse_workspace_bytes(cfg, tokens));
        FFNJIT_TRY(ws);
        FFNJIT_TRY(sparse_ffn_forward(kernels, cfg, w, x, out.ptr(), tokens, ws->ptr(), stream));
        const drv::Api* cu = dev.api();
        FFNJIT_CU(cuStreamSynchronize(stream));
        std::vector<uint16_t> got(reference.size());
        FFNJIT_TRY(out.download(got.data(), got.size() * 2));
        if (!(rel_diff(got, reference) <= 1e-2)) return internal_error(cfg.describe() + " disagrees with dense");
        return measure_graph(dev, stream, [&](CUstream s) {
          return run_stage(kernels, cfg, stage, w, x, out.ptr(), tokens, ws->ptr(), s);
        }, mo);
      });
  if (!std::isfinite(found.best_us))
    return internal_error("no sparse candidate ran at " + std::to_string(tokens) + " tokens; see the errors above");
  return found.best;
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
        auto t = tuned_config(*dev, stream, kernels, shape, *arch, sparse_w, x->ptr(), *out_sparse, m, reference,
                              o.measure);
        FFNJIT_TRY(t);
        cfg = *t;
      }
      row.sparse_kernels = cfg.describe();
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
