// The candidate check and timing shared by the tuner and the bench.
#include "tuner/candidate.hpp"

#include <cmath>

#include "support/bf16.hpp"

namespace ffnjit {

Expected<CandidateBench> CandidateBench::create(const Device& dev, CUstream stream, Layer& layer,
                                                const ref::FfnWeights& host, const std::vector<uint16_t>& x_host,
                                                int check_count) {
  CandidateBench b;
  b.dev_ = &dev, b.stream_ = stream, b.layer_ = &layer;
  b.d_model_ = layer.shape().d_model;
  b.tokens_ = int(x_host.size() / size_t(b.d_model_));
  if (b.tokens_ < 1) return internal_error("a candidate bench needs at least one token");
  auto x = DeviceBuffer::alloc(x_host.size() * 2);
  FFNJIT_TRY(x);
  b.x_ = std::move(*x);
  FFNJIT_TRY(b.x_.upload(x_host.data(), x_host.size() * 2));
  auto out = DeviceBuffer::alloc(x_host.size() * 2);
  FFNJIT_TRY(out);
  b.out_ = std::move(*out);
  for (int i = 0; i < check_count; ++i) {
    const int t = check_count > 1 ? int((long long)(b.tokens_ - 1) * i / (check_count - 1)) : 0;
    if (b.check_tokens_.empty() || b.check_tokens_.back() != t) b.check_tokens_.push_back(t);
  }
  b.ref_.resize(b.check_tokens_.size() * b.d_model_);
  ref::ffn_forward(host, x_host.data(), b.check_tokens_, b.ref_.data());
  return b;
}

Status CandidateBench::ensure_workspace(size_t bytes) {
  if (ws_.size() >= bytes && ws_.size()) return {};
  auto ws = DeviceBuffer::alloc(std::max<size_t>(bytes, 256));
  FFNJIT_TRY(ws);
  ws_ = std::move(*ws);
  return {};
}

Status CandidateBench::check(const ServedPlan& plan) {
  FFNJIT_TRY(ensure_workspace(layer_->workspace_bytes(plan, tokens_)));
  FFNJIT_TRY(out_.fill_bytes(0x7f));  // poison: an unwritten row reads as NaN-ish 0x7f7f
  FFNJIT_TRY(layer_->enqueue(plan, x_.ptr(), out_.ptr(), tokens_, ws_.ptr(), stream_));
  const drv::Api* cu = dev_->api();
  FFNJIT_CU(cuStreamSynchronize(stream_));
  std::vector<uint16_t> rows(check_tokens_.size() * d_model_);
  for (size_t i = 0; i < check_tokens_.size(); ++i)
    FFNJIT_TRY(out_.download(rows.data() + i * d_model_, size_t(d_model_) * 2, size_t(check_tokens_[i]) * d_model_ * 2));
  double num = 0, den = 0;
  bool finite = true;
  for (size_t i = 0; i < ref_.size(); ++i) {
    const double got = bf16_to_float(rows[i]), want = ref_[i];
    finite &= std::isfinite(got) || !std::isfinite(want);
    num += (got - want) * (got - want), den += want * want;
  }
  last_error_ = !finite ? INFINITY : den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  if (!(last_error_ <= kCandidateTolerance))
    return internal_error("output differs from the fp64 reference (relative error " + std::to_string(last_error_) +
                          ")");
  return {};
}

Expected<Timing> CandidateBench::time(const ServedPlan& plan, SearchStage stage, const MeasureOptions& mo) {
  FFNJIT_TRY(ensure_workspace(layer_->workspace_bytes(plan, tokens_)));
  const bool sparse = plan.choice.strategy == Choice::Strategy::kSparse;
  return measure_graph(*dev_, stream_, [&](CUstream s) -> Status {
    if (!sparse || stage == SearchStage::kForward) return layer_->enqueue(plan, x_.ptr(), out_.ptr(), tokens_, ws_.ptr(), s);
    return run_stage(plan.kernels, plan.choice.sparse, stage, layer_->sparse_weights(), x_.ptr(), out_.ptr(), tokens_,
                     ws_.ptr(), s);
  }, mo);
}

Expected<Timing> CandidateBench::check_and_time(const Choice& choice, SearchStage stage, const MeasureOptions& mo,
                                                bool allow_spills) {
  auto plan = layer_->make_plan(choice);
  FFNJIT_TRY(plan);
  for (const LoadedKernel* k : {(*plan)->kernels.gate, (*plan)->kernels.up, (*plan)->kernels.up_down})
    if (k && k->resources.spills() && !allow_spills) return internal_error(k->name + " spills to local memory; rejected");
  FFNJIT_TRY(check(**plan));  // a candidate counts only once it is correct
  return time(**plan, stage, mo);
}

Expected<CandidateBench::TwellStats> CandidateBench::twell_stats(const ServedPlan& p) const {
  if (p.choice.strategy != Choice::Strategy::kSparse) return internal_error("a dense plan has no TwELL");
  const size_t nt = size_t(p.choice.sparse.gate.n_tiles()), cap = size_t(p.choice.sparse.gate.sparsity.capacity);
  std::vector<uint32_t> counts(size_t(tokens_) * nt);
  const TwellView tw = twell_in_workspace(p.choice.sparse, tokens_, ws_.ptr());
  const drv::Api* cu = dev_->api();
  FFNJIT_CU(cuMemcpyDtoH(counts.data(), tw.counts, counts.size() * 4));
  double nnz = 0, over = 0;
  for (uint32_t c : counts) nnz += c, over += c > cap;
  return TwellStats{nnz / tokens_, over / double(counts.size())};
}

}  // namespace ffnjit
