// What `ffnjit tune` stores for a layer and bucket, and what `ffnjit bench --tuned`
// serves: the sparse search on one set of inputs, then its finalists, the untuned
// default and the dense path re-timed on inputs the search never saw.
#pragma once

#include <functional>

#include <nlohmann/json.hpp>

#include "tuner/candidate.hpp"

namespace ffnjit {

// A tuned choice must beat the untuned default by this much on the held-out inputs,
// else the default is kept: timing noise must never make tuning a loss.
inline constexpr double kKeepDefaultMargin = 0.02;
// The dense switch of a tuned winner fires no earlier than this many times the active
// neurons per token of the inputs it was tuned on.
inline constexpr double kSwitchMargin = 1.25;

struct Selection {
  Choice winner;
  double winner_us = 0, dense_us = 0;
  double default_us = 0;  // the untuned default on the held-out inputs
  nlohmann::json candidates = nlohmann::json::array();  // every timing or rejection, by stage
  int tried = 0, rejected = 0;
};

// `select` and `hold` time the same layer on different inputs. `planned` is the TwELL
// format the plan chose (from the profile when from_profile). `prepare` runs before a
// choice is first checked (the tuner waits for its compile pool there). `low`, when
// given, holds held-out rows at the bucket's low end (low_end_tokens): the finalists and
// dense are timed there too, and a choice is judged by its worse ratio to dense of the
// two token counts (a bucket of 1025-4096 tokens is searched at 4096 but also served at
// 1025: on the reference model a layer tuned at 4096 alone ran 0.60x dense at 2048).
Expected<Selection> select_choice(CandidateBench& select, CandidateBench& hold,
                                  const BatchBucket& bucket, const Sparsity& planned,
                                  bool from_profile, const MeasureOptions& mo,
                                  const std::function<Status(const Choice&)>& prepare = {},
                                  CandidateBench* low = nullptr);

}  // namespace ffnjit
