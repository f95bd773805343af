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

// The fp64 reference of the last input a layer was checked on (gpu_harness.cpp).
struct RefMemo {
  std::vector<uint16_t> x;
  std::vector<int> check;
  std::vector<double> out, gates;  // [check][d_model], [check][d_ff]
};

// A synthetic layer on the device, with WdT prepared as registration would.
struct DeviceLayer {
  synth::Layer host;
  DeviceWeights device;
  mutable RefMemo memo;
  FfnDeviceWeights weights() const { return device.sparse(); }
  DenseDeviceWeights dense_weights() const { return device.dense(); }
};
std::unique_ptr<DeviceLayer> upload_layer(Gpu& g, synth::Layer layer);

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
CaseResult run_dense_case(Gpu& g, const DeviceLayer& layer, const std::vector<uint16_t>& x, int tokens);

}  // namespace ffnjit::test
