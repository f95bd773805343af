// Checkpoints: config.json + safetensors, discovery of the ReLU FFN layers, fingerprint, bf16
// weights.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/reference.hpp"
#include "model/safetensors.hpp"
#include "nlohmann/json.hpp"
#include "support/status.hpp"

namespace ffnjit::model {

// One FFN layer as found in the checkpoint. Names are full tensor names; a
// transposed tensor is stored as the transpose of its Hugging Face layout
// (GPT-2's Conv1D, some exporters): Wg/Wu as [d_model][d_ff], Wd as [d_ff][d_model].
struct FfnLayer {
  int index = 0;
  int d_model = 0;
  int d_ff = 0;
  bool gated = true;           // gate_proj/up_proj/down_proj; false: fc1 (in) / fc2 (out)
  std::string gate, up, down;  // gate empty when !gated; non-gated: up = fc1, down = fc2
  // Bias tensors, empty when absent: OPT/GPT-2 up (fc1, c_fc) and down (fc2, c_proj);
  // Llama `mlp_bias` gate, up and down (all three or none, as transformers writes them).
  // Discovered, checked and served (docs/model.md).
  std::string gate_bias, up_bias, down_bias;
  bool has_bias() const { return !gate_bias.empty() || !up_bias.empty() || !down_bias.empty(); }
  bool gate_transposed = false, up_transposed = false, down_transposed = false;
  st::Dtype dtype = st::Dtype::kBF16;  // of the up projection; all three are float dtypes
};

struct ModelInfo {
  std::string model_type;
  std::string activation;             // what the FFN really computes: "relu", "relu2" or "fatrelu"
  float activation_threshold = 0.0f;  // fatrelu's (config hidden_act_param or fatrelu_threshold)
  std::string naming;      // "llama" (gate/up/down_proj), "opt" (fc1/fc2), "gpt2" (c_fc/c_proj)
  int hidden_size = 0;
  std::vector<FfnLayer> layers;    // by index, 0..n-1
  std::vector<std::string> notes;  // things a user should know (transposed layers, SparseLM rule)
  // SHA-256 of the canonical config.json, every tensor's name, dtype and shape, and a
  // sample of each FFN tensor's bytes. No path and no shard layout: the same weights
  // give the same fingerprint wherever and however they are stored.
  std::string fingerprint;
};

// A tensor name of one of the FFN naming families, split up. The grammar (matched
// from the end of the name, in time linear in its length):
//   llama: <prefix>layers.<N>.mlp.{gate_proj,up_proj,down_proj}.{weight,bias}
//   opt:   <prefix>layers.<N>.{fc1,fc2}.{weight,bias}
//   gpt2:  <prefix>h.<N>.mlp.{c_fc,c_proj}.{weight,bias}
// <N> is a layer number in canonical decimal: 1 to 6 digits, no leading zero.
struct FfnTensorName {
  const char* naming = "";  // "llama", "opt" or "gpt2"
  std::string prefix;       // e.g. "model.", "model.decoder.", "transformer."
  int layer = 0;
  std::string role;   // gate_proj, up_proj, down_proj, fc1, fc2, c_fc or c_proj
  bool bias = false;  // ".bias" rather than ".weight"
};
// nullopt: not an FFN tensor. An error (naming the tensor) for a name of the grammar
// whose layer number is not canonical (layers.01 would collide with layers.1) or too
// long, and for a name longer than st::kMaxTensorNameBytes.
Expected<std::optional<FfnTensorName>> match_ffn_tensor(std::string_view name);

// Decides from config.json and the tensor list which layers are ReLU-family FFNs (relu,
// relu2 / squared_relu, fatrelu). Refuses (kUnsupported) a model whose FFN activation is
// not one of them, saying why the sparsity kernels do not apply; kInvalidArgument for inconsistent shapes, missing tensors,
// layer numbers that are not canonical, and more FFN layers than config.json's
// num_hidden_layers (or n_layer, num_layers).
Expected<ModelInfo> discover(const nlohmann::json& config, const st::Store& tensors);

// One layer's weights in Hugging Face layouts as host bf16 (transposes undone):
// wg, wu [d_ff][d_model] (wg empty when !gated), wd [d_model][d_ff]; biases (if any)
// rounded to bf16, the kernels' type, as floats: gate_bias, up_bias [d_ff], down_bias
// [d_model]; the model's activation.
struct LayerWeights {
  int index = 0, d_model = 0, d_ff = 0;
  bool gated = true;
  std::vector<uint16_t> wg, wu, wd;
  std::vector<float> gate_bias, up_bias, down_bias;
  ref::Activation activation = ref::Activation::kRelu;
  float activation_threshold = 0.0f;
  ref::FfnWeights view() const {
    auto b = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
    return {gated ? wg.data() : nullptr,
            wu.data(),
            wd.data(),
            d_model,
            d_ff,
            gated,
            b(gate_bias),
            b(up_bias),
            b(down_bias),
            activation,
            activation_threshold};
  }
};

class Checkpoint {
 public:
  // `path`: a directory with config.json and model.safetensors or a sharded index.
  // config.json must be a regular file of at most kMaxConfigJsonBytes (16 MiB,
  // support/files.hpp) with JSON nesting of at most kMaxJsonDepth (64).
  static Expected<Checkpoint> open(const std::string& path);
  const ModelInfo& info() const { return info_; }
  const st::Store& tensors() const { return store_; }
  const nlohmann::json& config() const { return config_; }
  const std::string& path() const { return path_; }
  // Converts (bf16/fp16/fp32 -> bf16) and un-transposes one layer's weights.
  Expected<LayerWeights> load_layer(int index) const;

 private:
  Checkpoint(st::Store s) : store_(std::move(s)) {}
  std::string path_;
  nlohmann::json config_;
  st::Store store_;
  ModelInfo info_;
};

}  // namespace ffnjit::model
