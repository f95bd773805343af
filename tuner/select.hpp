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

struct Selection {
  Choice winner;
  double winner_us = 0, dense_us = 0;
  double default_us = 0;  // the untuned default on the held-out inputs
  nlohmann::json candidates = nlohmann::json::array();  // every timing or rejection, by stage
  int tried = 0, rejected = 0;
};

// `select` and `hold` time the same layer on different inputs. `planned` is the TwELL
// format the plan chose (from the profile when from_profile). `prepare` runs before a
// choice is first checked (the tuner waits for its compile pool there).
Expected<Selection> select_choice(CandidateBench& select, CandidateBench& hold, const BatchBucket& bucket,
                                  const Sparsity& planned, bool from_profile, const MeasureOptions& mo,
                                  const std::function<Status(const Choice&)>& prepare = {});

}  // namespace ffnjit
