// The gate evaluator `ffnjit profile` uses on a GPU: ffnjit's own gate_pack kernel
// with capacity = tile width (every active neuron stored), unpacked to fp32. The
// profile then sees exactly the activity the serving kernels see.
#pragma once

#include <memory>

#include "model/profiler.hpp"
#include "runtime/device.hpp"
#include "runtime/kernels.hpp"

namespace ffnjit {

// Evaluates on `dev`; the returned function keeps the device, a kernel table and
// the last layer's weights alive. Inactive neurons come back as 0.
Expected<model::GateFn> gpu_gate(int device);

}  // namespace ffnjit
