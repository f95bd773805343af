// The selection shared by `ffnjit tune` and `ffnjit bench --tuned` (select.hpp).
#include "tuner/select.hpp"

#include <cmath>

namespace ffnjit {

Expected<Selection> select_choice(CandidateBench& select, CandidateBench& hold,
                                  const BatchBucket& bucket, const Sparsity& planned,
                                  bool from_profile, const MeasureOptions& mo,
                                  const std::function<Status(const Choice&)>& prepare,
                                  CandidateBench* low) {
  Selection r;
  const LayerShape& shape = select.layer().shape();
  const Arch arch = select.layer().arch();
  auto record = [&](const std::string& stage, const Choice& c, const Expected<Timing>& t) {
    nlohmann::json j = {{"stage", stage}, {"config", choice_to_json(c)}};
    if (t) j["us"] = t->median_us, j["spread"] = t->spread;
    else j["error"] = t.error().message;
    r.candidates.push_back(j);
    ++r.tried;
    r.rejected += !t;
  };
  auto check_time = [&](CandidateBench& b, const Choice& c, SearchStage stage, const MeasureOptions& m,
                        bool allow_spills = false) -> Expected<Timing> {
    if (prepare) FFNJIT_TRY(prepare(c));
    return b.check_and_time(c, stage, m, allow_spills);
  };
  MeasureOptions screen = mo;
  screen.samples = std::min(mo.samples, 5);  // screening; the finalists are re-timed in full
  const Choice untuned{Choice::Strategy::kSparse, default_sparse_config(shape, arch, bucket)};
  const Choice dense{Choice::Strategy::kDense, {}};
  {
    auto td = check_time(select, dense, SearchStage::kForward, screen);
    record("dense", dense, td);
    if (!td) return Error{td.error().kind, "the dense baseline failed: " + td.error().message};
  }
  // The search times the sparse paths themselves: the dense switch off (it is set for
  // the winner below, from these inputs' sparsity).
  const SearchResult found = search_sparse(shape, arch, bucket, format_candidates(planned, bucket, from_profile),
                                           [&](SparseFfnConfig cfg, SearchStage stage) -> Expected<Timing> {
                                             cfg.switch_active = 0;
                                             const Choice c{Choice::Strategy::kSparse, cfg};
                                             auto t = check_time(select, c, stage, screen);
                                             record(stage_name(stage), c, t);
                                             return t;
                                           });
  // Held out: the untuned default, the best few sparse forwards and dense, in full.
  std::vector<Choice> finalists = {untuned};
  for (size_t i = 0; i < found.forwards.size() && finalists.size() < 1 + kForwardGates; ++i) {
    Choice c{Choice::Strategy::kSparse, found.forwards[i].first};
    c.sparse.switch_active = 0;
    finalists.push_back(c);
  }
  // Each finalist's cost relative to dense: on the held-out rows at the bucket's
  // measured count, and (with `low`) at its low end too, where the worse of the two counts.
  auto td = check_time(hold, dense, SearchStage::kForward, mo);
  record("held-out dense", dense, td);
  FFNJIT_TRY(td);
  r.dense_us = td->median_us;
  double dense_low = 0;
  if (low) {
    auto tl = check_time(*low, dense, SearchStage::kForward, mo);
    record("low-end dense", dense, tl);
    FFNJIT_TRY(tl);
    dense_low = tl->median_us;
  }
  double best_cost = INFINITY, best_us = INFINITY, default_cost = 0;
  r.winner = untuned;
  for (size_t i = 0; i < finalists.size(); ++i) {
    // (The default is judged by its time even where it spills: at the 64-register edge of
    // the decode cluster up_down, a tiny layer's every candidate can spill, and a tune with
    // no candidate left would fail where the default serves.)
    auto t = check_time(hold, finalists[i], SearchStage::kForward, mo, i == 0);
    record(i == 0 ? "held-out default" : "held-out", finalists[i], t);
    if (!t) continue;
    double cost = t->median_us / r.dense_us;
    if (low) {
      auto tl = check_time(*low, finalists[i], SearchStage::kForward, mo, i == 0);
      record(i == 0 ? "low-end default" : "low-end", finalists[i], tl);
      if (!tl) continue;
      cost = std::max(cost, tl->median_us / dense_low);
    }
    if (i == 0) r.default_us = t->median_us, default_cost = cost;
    if (cost < best_cost) best_cost = cost, best_us = t->median_us, r.winner = finalists[i];
  }
  if (!std::isfinite(best_us)) return internal_error("no sparse candidate ran; see the tuning record's candidates");
  if (default_cost > 0 && default_cost <= best_cost * (1 + kKeepDefaultMargin))
    r.winner = untuned, best_us = r.default_us, best_cost = default_cost;
  // Never slower than dense, at either end: the dense fallback wins ties and losses.
  if (!(best_cost < 1.0)) r.winner = dense, best_us = r.dense_us;
  r.winner_us = best_us;
  // The dense switch of a GEMM-gate winner: a batch whose active neurons per token exceed
  // what these inputs had by the measured dense/sparse ratio (the sparse forward grows
  // with its pairs) runs the dense up/down; at least kSwitchMargin times these inputs',
  // so the batches it was tuned on never switch. Kept only if its own cost (a memset and
  // a conditional node) stays within kKeepDefaultMargin.
  if (r.winner.strategy == Choice::Strategy::kSparse && r.winner.sparse.gemm_gate() &&
      r.winner.sparse.switch_active == 0 && bucket.min_tokens >= kSwitchMinTokens) {
    auto plan = hold.layer().make_plan(r.winner);
    FFNJIT_TRY(plan);
    FFNJIT_TRY(hold.check(**plan));
    auto st = hold.twell_stats(**plan);
    FFNJIT_TRY(st);
    const double k = std::max(1.0, st->mean_active);
    const double t = std::max(k * kSwitchMargin, k * r.dense_us / std::max(1e-3, r.winner_us));
    Choice switched = r.winner;
    switched.sparse.switch_active = int(std::min<double>(t, shape.d_ff));
    auto ts = check_time(hold, switched, SearchStage::kForward, mo);
    record("held-out switch", switched, ts);
    if (ts && ts->median_us <= r.winner_us * (1 + kKeepDefaultMargin) && ts->median_us < r.dense_us)
      r.winner = switched, r.winner_us = ts->median_us;
  }
  return r;
}

}  // namespace ffnjit
