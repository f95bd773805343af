// GPU timing: capture the work in a CUDA graph (launch gaps excluded, as a serving
// engine would run it), replay it between CUDA events, report the median and spread.
#pragma once

#include <cuda.h>

#include <functional>

#include "runtime/device.hpp"

namespace ffnjit {

struct Timing {
  double median_us = 0;
  double min_us = 0;
  double max_us = 0;
  double spread = 0;  // (p90 - p10) / median over the samples: the noise estimate
  int samples = 0;
};

struct MeasureOptions {
  int warmup = 3;               // graph replays before timing
  int samples = 15;             // timed samples (median reported)
  double min_sample_us = 2000;  // each sample replays the graph enough times to last this long
  // Before every replay, overwrite a buffer twice the L2 size, so weights and inputs
  // come from device memory as in serving (where other layers evict them); the
  // flush's own time, measured alone, is subtracted.
  bool flush_l2 = true;
};

// `enqueue` must only enqueue work on the given stream (it is captured once).
Expected<Timing> measure_graph(const Device& dev, CUstream stream, const std::function<Status(CUstream)>& enqueue,
                               const MeasureOptions& opts = {});

}  // namespace ffnjit
