// The selection shared by `ffnjit tune` and `ffnjit bench --tuned` (select.hpp).
#include "tuner/select.hpp"

#include <cmath>

namespace ffnjit {

Expected<Selection> select_choice(CandidateBench& select, CandidateBench& hold, const BatchBucket& bucket,
                                  const Sparsity& planned, bool from_profile, const MeasureOptions& mo,
                                  const std::function<Status(const Choice&)>& prepare) {
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
  auto check_time = [&](CandidateBench& b, const Choice& c, SearchStage stage,
                        const MeasureOptions& m) -> Expected<Timing> {
    if (prepare) FFNJIT_TRY(prepare(c));
    return b.check_and_time(c, stage, m);
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
  const SearchResult found = search_sparse(shape, arch, bucket, format_candidates(planned, bucket, from_profile),
                                           [&](const SparseFfnConfig& cfg, SearchStage stage) -> Expected<Timing> {
                                             const Choice c{Choice::Strategy::kSparse, cfg};
                                             auto t = check_time(select, c, stage, screen);
                                             record(stage_name(stage), c, t);
                                             return t;
                                           });
  // Held out: the untuned default, the best few sparse forwards and dense, in full.
  std::vector<Choice> finalists = {untuned};
  for (size_t i = 0; i < found.forwards.size() && finalists.size() < 1 + kForwardGates; ++i)
    finalists.push_back(Choice{Choice::Strategy::kSparse, found.forwards[i].first});
  double best_us = INFINITY;
  r.winner = untuned;
  for (size_t i = 0; i < finalists.size(); ++i) {
    auto t = check_time(hold, finalists[i], SearchStage::kForward, mo);
    record(i == 0 ? "held-out default" : "held-out", finalists[i], t);
    if (!t) continue;
    if (i == 0) r.default_us = t->median_us;
    if (t->median_us < best_us) best_us = t->median_us, r.winner = finalists[i];
  }
  if (!std::isfinite(best_us)) return internal_error("no sparse candidate ran; see the tuning record's candidates");
  if (r.default_us > 0 && r.default_us <= best_us * (1 + kKeepDefaultMargin)) r.winner = untuned, best_us = r.default_us;
  auto td = check_time(hold, dense, SearchStage::kForward, mo);
  record("held-out dense", dense, td);
  FFNJIT_TRY(td);
  r.dense_us = td->median_us;
  // Never slower than dense: the dense fallback wins ties and losses.
  if (!(best_us < r.dense_us)) r.winner = dense, best_us = r.dense_us;
  r.winner_us = best_us;
  return r;
}

}  // namespace ffnjit
