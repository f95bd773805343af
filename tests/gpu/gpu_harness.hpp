// Shared GPU test harness: device + kernel table + stream, layers on the device,
// poisoned buffers, and the comparison against the fp64 CPU reference.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/reference.hpp"
#include "model/synthetic.hpp"
#include "runtime/dense_ffn.hpp"
#include "runtime/device.hpp"
#include "runtime/kernels.hpp"
#include "runtime/device_weights.hpp"
#include "runtime/sparse_ffn.hpp"

namespace ffnjit::test {

struct Gpu {
  std::unique_ptr<Device> device;
  KernelTable kernels;
  CUstream stream = nullptr;
  Arch arch = Arch::kSm90a;
};

// The process's GPU, or nullptr with `why` set (tests then print [SKIP] why).
Gpu* gpu(std::string* why);
// gpu(), printing "[SKIP] no GPU: <why>" when there is none.
Gpu* need_gpu();

// The fp64 reference of the last input a layer was checked on (gpu_harness.cpp).
struct RefMemo {
  std::vector<uint16_t> x;
  std::vector<int> check;
  float threshold = 0.0f;
  std::vector<double> out, gates;  // [check][d_model], [check][d_ff]
};

// What a test layer computes beyond a bias-free ReLU FFN: its activation and which
// biases it has (LayerShape's meaning: gate_bias is Wg's, gated layers only).
struct LayerMath {
  Activation activation = Activation::kRelu;
  bool gate_bias = false, up_bias = false, down_bias = false;
};

// A synthetic layer on the device, with WdT prepared as registration would, and its
// biases (random bf16 values scaled to matter without drowning the sparse part: the gate
// bias shifts pre-activations by ~0.25 sigma, the down bias is the size of the bias-free
// output). `threshold` is fatrelu's, a launch value: tests pick it per input
// (choose_threshold).
struct DeviceLayer {
  synth::Layer host;
  LayerShape shape;
  std::vector<float> gate_bias, up_bias, down_bias;  // bf16-exact; empty when absent
  float threshold = 0.0f;
  DeviceWeights device;
  mutable RefMemo memo;
  FfnDeviceWeights weights() const {
    FfnDeviceWeights w = device.sparse();
    w.threshold = threshold;
    return w;
  }
  DenseDeviceWeights dense_weights() const {
    DenseDeviceWeights w = device.dense();
    w.threshold = threshold;
    return w;
  }
  ref::FfnWeights reference() const;  // the same math for the fp64 reference
};
std::unique_ptr<DeviceLayer> upload_layer(Gpu& g, synth::Layer layer, const LayerMath& math = {},
                                          uint64_t bias_seed = 7);

// The tokens run_sparse_case and run_dense_case compare (all when few, else a sample,
// plus `must_check`).
std::vector<int> checked_tokens(int tokens, const std::vector<int>& must_check = {});

// A fatrelu threshold near the median positive pre-activation of the checked tokens of
// `x`, moved to a bf16 value whose rounding edge (where bf16(z) > t flips) has no checked
// pre-activation within 1e-4 relative: the GPU's fp32 sums and the reference's fp64 ones
// then agree on every neuron's activity, so the comparison tests the kernels, not ties.
float choose_threshold(const DeviceLayer& layer, const std::vector<uint16_t>& x, int tokens,
                       const std::vector<int>& must_check = {});

// ||out - ref|| / ||ref|| over the checked tokens against the reference of `w` (e.g. the
// layer's with one bias dropped: the test that a missing bias would be caught).
double relative_error(const ref::FfnWeights& w, const std::vector<uint16_t>& x,
                      const std::vector<uint16_t>& out, int tokens,
                      const std::vector<int>& must_check = {});

struct CaseResult {
  double rel_error = 0;        // ||out - ref|| / ||ref|| over the checked tokens
  double worst_token_error = 0;  // max over checked tokens of the per-token relative error
  int unwritten = 0;           // output elements still holding the poison pattern (any token)
  int nonfinite_unexpected = 0;  // non-finite outputs where the reference is finite
  int finite_unexpected = 0;     // finite outputs where the reference is not
  int checked_tokens = 0;
  uint32_t overflow = 0;       // (token, tile) pairs over capacity, from the kernel's counter
  std::string twell_problem;   // empty when the TwELL of the checked tokens is consistent
  std::string error;           // a Status message when the run itself failed
  bool ok(double tol = 1e-2) const;
  std::string describe() const;
};

// Runs the sparse forward on `x` (tokens x d_model, bf16) with poisoned output and
// workspace, and compares against the fp64 reference on a sample of tokens
// (all tokens when few, plus every token listed in `must_check`).
// `out_copy`, when given, receives the whole output.
CaseResult run_sparse_case(Gpu& g, const DeviceLayer& layer, const SparseFfnConfig& cfg, const std::vector<uint16_t>& x,
                           int tokens, const std::vector<int>& must_check = {},
                           std::vector<uint16_t>* out_copy = nullptr);

// The same comparison for the cuBLASLt dense path.
CaseResult run_dense_case(Gpu& g, const DeviceLayer& layer, const std::vector<uint16_t>& x,
                          int tokens, std::vector<uint16_t>* out_copy = nullptr);

// Compiles specs on all host cores before a sweep and loads them into the table (a
// sweep over activations and biases needs many distinct kernels; KernelTable::get would
// compile them one at a time).
void precompile(Gpu& g, const std::vector<KernelSpec>& specs);

}  // namespace ffnjit::test
