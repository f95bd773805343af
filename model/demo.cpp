// A synthetic ReLU-gated checkpoint whose sparsity resembles trained sparse LLMs.
//
// How the gate gets its distribution (see docs/model.md): feature 0 of every input
// is a constant 1, the rest is sigma_t * N(0, I) with a per-token scale sigma_t =
// exp(0.2 * N(0, 1)) (shared by all layers, so a heavy token is heavy everywhere).
// Gate row j is [b_j, w_j] with |w_j| = 1, so its pre-activation is b_j + sigma_t *
// zeta, zeta ~ N(0, 1): the first weight acts as a bias. w_j mixes a direction shared
// by a cluster of ~12 neurons (weight 0.55) with its own direction, so clusters fire
// together and tokens aligned with a cluster are heavy. Live neurons get
// log-normally spread firing rates (hot neurons; floored at 0.4x the mean so
// that live neurons do fire in a profile of a few thousand tokens), normalised to the layer's
// target mean, and b_j is solved so that E_sigma[Phi(b_j / sigma)] equals that rate. Dead neurons
// get b_j = -30: they never fire.
#include "model/demo.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>

#include "model/safetensors.hpp"
#include "support/bf16.hpp"
#include "support/files.hpp"
#include "support/json.hpp"
#include "support/rng.hpp"

namespace ffnjit::model {
namespace {

using Rng = SplitMix64;

double phi(double z) {
  return 0.5 * std::erfc(-z / std::sqrt(2.0));
}

double inv_phi(double p) {  // bisection: precise enough and dependency-free
  double lo = -10, hi = 10;
  for (int i = 0; i < 80; ++i) ((phi((lo + hi) / 2) < p) ? lo : hi) = (lo + hi) / 2;
  return (lo + hi) / 2;
}

constexpr double kSigmaSpread = 0.2;  // log-normal spread of the per-token scale
constexpr double kRateSpread = 1.2;   // log-normal spread of live neurons' firing rates
constexpr double kClusterWeight = 0.55;
constexpr int kClusterSize = 12;
constexpr double kDensityFactor[] = {1.0, 0.6, 1.6, 0.8};
constexpr double kDeadFactor[] = {1.0, 0.0, 2.0, 1.0};
constexpr double kRateFloor =
    0.4;  // live neurons fire at >= 0.4x their layer's mean rate: few near-dead ones

void unit(std::vector<double>& v) {
  double n = 0;
  for (double x : v) n += x * x;
  n = std::sqrt(n);
  for (double& x : v) x /= n;
}

std::string_view bytes_of(const std::vector<uint16_t>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size() * 2};
}

// One layer's gate weights [d_ff][d_model] in bf16: column 0 the biases, the rest unit rows.
std::vector<uint16_t> gate_weights(Rng& rng, const DemoOptions& o, int layer,
                                   const std::vector<double>& sigma_q) {
  const int F = o.d_ff, D = o.d_model, k = D - 1;
  const double density = std::min(0.5, o.density * kDensityFactor[layer % 4]);
  const double dead_frac = std::clamp(o.dead_fraction * kDeadFactor[layer % 4], 0.0, 0.95);
  std::vector<uint32_t> perm(static_cast<size_t>(F));
  std::iota(perm.begin(), perm.end(), 0u);
  for (int i = F - 1; i > 0; --i) std::swap(perm[i], perm[rng.next() % uint64_t(i + 1)]);
  const int live = std::max(1, int(std::lround(F * (1 - dead_frac))));
  // Firing rates of the live neurons: log-normal, capped at 0.5, summing to density * F.
  std::vector<double> rate(static_cast<size_t>(live));
  for (double& r : rate)
    r = std::max(kRateFloor, std::exp(kRateSpread * rng.normal() - kRateSpread * kRateSpread / 2));
  for (int it = 0; it < 30; ++it) {
    const double s = std::accumulate(rate.begin(), rate.end(), 0.0);
    for (double& r : rate) r = std::min(0.5, r * density * F / s);
  }
  std::vector<double> bias(size_t(F), -30.0);
  for (int i = 0; i < live; ++i) {
    double lo = -12, hi = 0;  // E_sigma[Phi(b / sigma)] = rate, increasing in b
    for (int step = 0; step < 50; ++step) {
      const double mid = (lo + hi) / 2;
      double v = 0;
      for (double s : sigma_q) v += phi(mid / s);
      ((v / double(sigma_q.size()) < rate[i]) ? lo : hi) = mid;
    }
    bias[perm[i]] = (lo + hi) / 2;
  }
  const int clusters = std::max(1, F / kClusterSize);
  std::vector<std::vector<double>> dirs(static_cast<size_t>(clusters),
                                        std::vector<double>(static_cast<size_t>(k)));
  for (auto& d : dirs) {
    for (double& x : d) x = rng.normal();
    unit(d);
  }
  std::vector<uint16_t> w(size_t(F) * D);
  std::vector<double> row(static_cast<size_t>(k));
  for (int j = 0; j < F; ++j) {
    const auto& u = dirs[rng.next() % uint64_t(clusters)];
    std::vector<double> own(static_cast<size_t>(k));
    for (double& x : own) x = rng.normal();
    unit(own);
    for (int i = 0; i < k; ++i)
      row[i] = kClusterWeight * u[i] + std::sqrt(1 - kClusterWeight * kClusterWeight) * own[i];
    unit(row);
    w[size_t(j) * D] = float_to_bf16(float(bias[j]));
    for (int i = 0; i < k; ++i) w[size_t(j) * D + 1 + i] = float_to_bf16(float(row[i]));
  }
  return w;
}

std::vector<uint16_t> gaussian_bf16(Rng& rng, size_t n, double scale) {
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = float_to_bf16(float(scale * rng.normal()));
  return v;
}

}  // namespace

Status write_demo_checkpoint(const std::string& dir, const DemoOptions& o) {
  if (o.layers < 1 || o.layers > 1024) return user_error("--layers must be in [1, 1024]");
  if (o.d_model < 16 || o.d_model % 8 || o.d_model > 65536)
    return user_error("d_model=" + std::to_string(o.d_model) +
                      " must be a multiple of 8 in [16, 65536]");
  if (o.d_ff < 16 || o.d_ff % 8 || o.d_ff > 65536)
    return user_error("d_ff=" + std::to_string(o.d_ff) + " must be a multiple of 8 in [16, 65536]");
  if (o.tokens < 1 || o.tokens > (1 << 22)) return user_error("--tokens must be in [1, 4194304]");
  if (!(o.density > 0 && o.density <= 0.5)) return user_error("density must be in (0, 0.5]");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return io_error(dir + ": cannot create the directory: " + ec.message());

  const int D = o.d_model, F = o.d_ff;
  // Per-token scales of the inputs and the quantiles used to calibrate the biases.
  Rng rng{o.seed * 0x2545f4914f6cdd1dull + 1};
  std::vector<double> sigma_q(64);
  for (int i = 0; i < 64; ++i) sigma_q[i] = std::exp(kSigmaSpread * inv_phi((i + 0.5) / 64));
  std::vector<double> sigma(static_cast<size_t>(o.tokens));
  for (double& s : sigma) s = std::exp(kSigmaSpread * rng.normal());

  std::vector<std::vector<uint16_t>> store;  // keeps the bytes alive until written
  std::vector<st::WriteTensor> tensors;
  auto add = [&](std::string name, std::vector<int64_t> shape, std::vector<uint16_t> data) {
    store.push_back(std::move(data));
    tensors.push_back({std::move(name), st::Dtype::kBF16, std::move(shape), {}});
  };
  const int vocab = 256;
  add("model.embed_tokens.weight", {vocab, D}, gaussian_bf16(rng, size_t(vocab) * D, 1.0));
  add("model.norm.weight", {D}, std::vector<uint16_t>(size_t(D), float_to_bf16(1.0f)));
  std::vector<st::WriteTensor> input_tensors;
  std::vector<std::vector<uint16_t>> input_store;
  for (int l = 0; l < o.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Rng lr{rng.next()};
    add(p + "mlp.gate_proj.weight", {F, D}, gate_weights(lr, o, l, sigma_q));
    add(p + "mlp.up_proj.weight", {F, D}, gaussian_bf16(lr, size_t(F) * D, 1.0 / std::sqrt(D)));
    add(p + "mlp.down_proj.weight", {D, F},
        gaussian_bf16(lr, size_t(D) * F, 1.0 / std::sqrt(F * o.density)));
    add(p + "input_layernorm.weight", {D}, std::vector<uint16_t>(size_t(D), float_to_bf16(1.0f)));
    add(p + "post_attention_layernorm.weight", {D},
        std::vector<uint16_t>(size_t(D), float_to_bf16(1.0f)));
    std::vector<uint16_t> x(size_t(o.tokens) * D);
    for (int64_t m = 0; m < o.tokens; ++m) {
      x[size_t(m) * D] = float_to_bf16(1.0f);  // the constant feature the gate biases ride on
      for (int i = 1; i < D; ++i)
        x[size_t(m) * D + i] = float_to_bf16(float(sigma[m] * lr.normal()));
    }
    input_store.push_back(std::move(x));
    input_tensors.push_back(
        {"layers." + std::to_string(l) + ".input", st::Dtype::kBF16, {o.tokens, D}, {}});
  }
  for (size_t i = 0; i < tensors.size(); ++i) tensors[i].bytes = bytes_of(store[i]);
  for (size_t i = 0; i < input_tensors.size(); ++i)
    input_tensors[i].bytes = bytes_of(input_store[i]);

  const std::map<std::string, std::string> meta = {{"format", "pt"},
                                                   {"ffnjit_demo_seed", std::to_string(o.seed)}};
  namespace fs = std::filesystem;
  if (o.shards > 1)
    FFNJIT_TRY(st::write_sharded(dir, tensors, o.shards, meta));
  else
    FFNJIT_TRY(st::write_file((fs::path(dir) / "model.safetensors").string(), tensors, meta));
  FFNJIT_TRY(st::write_file(
      (fs::path(dir) / "inputs.safetensors").string(), input_tensors,
      {{"ffnjit",
        "captured FFN inputs of the demo checkpoint: layers.N.input [tokens, d_model]"}}));

  nlohmann::ordered_json cfg;
  cfg["architectures"] = {"LlamaForCausalLM"};
  cfg["model_type"] = "llama_sparse_relu";
  cfg["hidden_act"] = "relu";
  cfg["hidden_size"] = D;
  cfg["intermediate_size"] = F;
  cfg["num_hidden_layers"] = o.layers;
  cfg["num_attention_heads"] = std::max(1, D / 64);
  cfg["num_key_value_heads"] = std::max(1, D / 64);
  cfg["vocab_size"] = vocab;
  cfg["rms_norm_eps"] = 1e-6;
  cfg["torch_dtype"] = "bfloat16";
  cfg["ffnjit_demo"] = {
      {"seed", o.seed},
      {"density", o.density},
      {"dead_fraction", o.dead_fraction},
      {"note", "synthetic weights from `ffnjit demo-checkpoint`; see docs/model.md"}};
  return write_file_atomically((fs::path(dir) / "config.json").string(), dump_json(cfg, 2) + "\n");
}

}  // namespace ffnjit::model
