// The sparse-vs-dense benchmark behind `ffnjit bench`.
#include "tuner/bench.hpp"

#include <cmath>

#include "model/synthetic.hpp"
#include "runtime/device_weights.hpp"
#include "support/bf16.hpp"

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
      const SparseFfnConfig cfg = default_sparse_config(shape, *arch, m);
      row.sparse_kernels = cfg.gemm_gate() ? "cuBLASLt GEMM" : "";
      for (const auto& s : cfg.kernel_specs())
        row.sparse_kernels += (row.sparse_kernels.empty() ? "" : " + ") + s.kernel_name();
      auto ws_dense = DeviceBuffer::alloc((*dense)->workspace_bytes(m));
      FFNJIT_TRY(ws_dense);
      auto ws_sparse = DeviceBuffer::alloc(sparse_workspace_bytes(cfg, m));
      FFNJIT_TRY(ws_sparse);
      auto run_dense = [&](CUstream s) {
        return (*dense)->forward(weights->dense(), x->ptr(), out_dense->ptr(), m, ws_dense->ptr(), s);
      };
      // A layer's own overflow counter, as the C API serves it (no memset node per forward).
      auto overflow_counter = DeviceBuffer::alloc(4);
      FFNJIT_TRY(overflow_counter);
      FfnDeviceWeights sparse_w = weights->sparse();
      sparse_w.overflow_counter = overflow_counter->ptr();
      auto run_sparse = [&](CUstream s) {
        return sparse_ffn_forward(kernels, cfg, sparse_w, x->ptr(), out_sparse->ptr(), m, ws_sparse->ptr(), s);
      };
      auto td = measure_graph(*dev, stream, run_dense, o.measure);
      FFNJIT_TRY(td);
      auto ts = measure_graph(*dev, stream, run_sparse, o.measure);
      FFNJIT_TRY(ts);
      row.dense = *td, row.sparse = *ts;
      row.ratio = td->median_us / ts->median_us;

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
