// Checkpoints: config.json + safetensors, discovery of the ReLU FFN layers, fingerprint, bf16
// weights.
#include "model/checkpoint.hpp"

#include <algorithm>
#include <filesystem>
#include <map>

#include "support/bf16.hpp"
#include "support/files.hpp"
#include "support/hash.hpp"
#include "support/json.hpp"
#include "support/strings.hpp"

namespace ffnjit::model {

using nlohmann::json;

namespace {

// The naming families ffnjit knows. `default_transposed`: the layout when the shape
// cannot tell (d_ff == d_model): Conv1D (GPT-2) stores [in][out].
struct Naming {
  const char* name;
  const char* layers;  // what precedes the layer number: "layers." or "h."
  bool mlp;            // ".mlp" between the layer number and the role
  std::initializer_list<const char*> roles;
  bool gated;
  bool default_transposed;
};

const Naming kNamings[] = {
    {"llama", "layers.", true, {"gate_proj", "up_proj", "down_proj"}, true, false},
    {"opt", "layers.", false, {"fc1", "fc2"}, false, false},
    {"gpt2", "h.", true, {"c_fc", "c_proj"}, false, true},
};

const Naming* naming_named(const char* name) {
  for (const Naming& n : kNamings)
    if (std::string_view(n.name) == name) return &n;
  return nullptr;
}

// Removes `suffix` from the end of `s` if it is there.
bool eat(std::string_view& s, std::string_view suffix) {
  if (s.size() < suffix.size() || s.substr(s.size() - suffix.size()) != suffix) return false;
  s.remove_suffix(suffix.size());
  return true;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

const json* first_of(const json& c, std::initializer_list<const char*> keys) {
  for (const char* k : keys)
    if (c.contains(k) && !c[k].is_null()) return &c[k];
  return nullptr;
}

struct Found {
  std::map<std::string, std::string> roles;  // role ("gate_proj.weight", "fc1.bias") -> tensor name
};

// Checks a 2-D projection against hidden_size and tells its d_ff and orientation.
// `in_proj`: Wg/Wu/fc1 ([d_ff][d_model] in HF layout); otherwise Wd/fc2 ([d_model][d_ff]).
Status orient(const st::TensorInfo& t, int hidden, bool in_proj, bool default_transposed, int* d_ff,
              bool* transposed, std::vector<std::string>* notes) {
  if (t.shape.size() != 2)
    return user_error("tensor '" + t.name + "' has shape " + shape_str(t.shape) +
                      "; an FFN projection is 2-D");
  if (!st::is_float_dtype(t.dtype))
    return unsupported("tensor '" + t.name + "' has dtype " + st::dtype_name(t.dtype) +
                       "; ffnjit reads BF16, F16 or F32 weights (dequantize the checkpoint first)");
  const int64_t a = t.shape[0], b = t.shape[1];
  const int64_t h = hidden;
  // HF layout: in_proj [d_ff][d_model], out_proj [d_model][d_ff].
  const int64_t hf_ff = in_proj ? a : b, hf_model = in_proj ? b : a;
  if (a == h && b == h) {
    *transposed = default_transposed;
    notes->push_back("'" + t.name + "' is square (" + std::to_string(h) +
                     "); its orientation cannot be told by shape, " +
                     (default_transposed ? "assuming the transposed (Conv1D) layout"
                                         : "assuming the nn.Linear layout"));
    *d_ff = int(h);
  } else if (hf_model == h) {
    *transposed = false;
    *d_ff = int(hf_ff);
  } else if (hf_ff == h) {
    *transposed = true;
    *d_ff = int(hf_model);
  } else {
    return user_error("tensor '" + t.name + "' has shape " + shape_str(t.shape) +
                      "; neither dimension is config.json's hidden_size=" + std::to_string(h));
  }
  if (*d_ff < 1 || *d_ff > (1 << 20))
    return unsupported("tensor '" + t.name + "' gives d_ff=" + std::to_string(*d_ff) +
                       "; ffnjit handles 1..1048576");
  return {};
}

Status check_bias(const st::TensorInfo& t, int64_t want) {
  if (t.shape.size() != 1 || t.shape[0] != want)
    return user_error("bias '" + t.name + "' has shape " + shape_str(t.shape) + "; expected [" +
                      std::to_string(want) + "]");
  if (!st::is_float_dtype(t.dtype))
    return unsupported("bias '" + t.name + "' has dtype " + st::dtype_name(t.dtype) +
                       "; expected BF16, F16 or F32");
  return {};
}

std::string layer_count(const std::map<int, Found>& layers) {
  return std::to_string(layers.size()) + " layers (" +
         (layers.empty() ? std::string("none")
                         : std::to_string(layers.begin()->first) + ".." +
                               std::to_string(layers.rbegin()->first)) +
         ")";
}

void sample_bytes(Sha256& h, std::string_view raw) {
  // Enough to tell fine-tunes apart without reading gigabytes: the whole tensor
  // when small, else 16 evenly spaced 4 KiB windows.
  constexpr size_t kWin = 4096, kWins = 16;
  if (raw.size() <= kWin * kWins) {
    h.update(raw);
    return;
  }
  for (size_t i = 0; i < kWins; ++i)
    h.update(raw.substr((raw.size() - kWin) * i / (kWins - 1), kWin));
}

}  // namespace

Expected<std::optional<FfnTensorName>> match_ffn_tensor(std::string_view name) {
  if (name.size() > st::kMaxTensorNameBytes)
    return user_error("a tensor name of " + std::to_string(name.size()) + " bytes ('" +
                      text_excerpt(name, 60) + "') is longer than the limit of " +
                      std::to_string(st::kMaxTensorNameBytes) + " bytes");
  // Parsed from the end: the suffix after the layer number is one of a few fixed
  // strings, the number is the run of digits before it, and the prefix is what is
  // left in front of "layers." / "h.". This is what the anchored patterns
  // ^(.*?)layers\.(\d+)\.mlp\.(gate_proj|...)\.(weight|bias)$ accept, without a
  // backtracking regex (std::regex recursed once per character: a 47k-character name
  // overflowed the stack).
  std::string_view rest = name;
  bool bias = false;
  if (eat(rest, ".bias"))
    bias = true;
  else if (!eat(rest, ".weight"))
    return std::optional<FfnTensorName>();
  for (const Naming& n : kNamings)
    for (const char* role : n.roles) {
      std::string_view s = rest;
      if (!eat(s, "." + std::string(role)) || (n.mlp && !eat(s, ".mlp"))) continue;
      size_t digits = 0;
      while (digits < s.size() && s[s.size() - 1 - digits] >= '0' &&
             s[s.size() - 1 - digits] <= '9')
        ++digits;
      if (digits == 0) continue;
      const std::string_view number = s.substr(s.size() - digits);
      s.remove_suffix(digits);
      if (!eat(s, n.layers)) continue;
      if (digits > 6)
        return user_error("tensor '" + std::string(name) + "' has an implausible layer number");
      if (digits > 1 && number[0] == '0')
        return user_error("tensor '" + std::string(name) + "' writes layer " +
                          std::to_string(std::stoi(std::string(number))) + " as '" +
                          std::string(number) + "'; layer numbers have no leading zeros (" +
                          n.layers + "1 and " + n.layers + "01 would be the same layer)");
      FfnTensorName out;
      out.naming = n.name;
      out.prefix = std::string(s);
      out.layer = std::stoi(std::string(number));
      out.role = role;
      out.bias = bias;
      return std::optional<FfnTensorName>(std::move(out));
    }
  return std::optional<FfnTensorName>();
}

Expected<ModelInfo> discover(const json& config, const st::Store& store) {
  if (!config.is_object()) return user_error("config.json: must be a JSON object");
  ModelInfo info;
  if (const json* mt = first_of(config, {"model_type"}); mt && mt->is_string())
    info.model_type = mt->get<std::string>();
  const json* hidden = first_of(config, {"hidden_size", "d_model", "n_embd"});
  if (!hidden || !hidden->is_number_unsigned() || hidden->get<uint64_t>() == 0 ||
      hidden->get<uint64_t>() > (1u << 20))
    return user_error(
        "config.json: needs hidden_size (or d_model / n_embd) as a positive integer to orient the "
        "FFN weights");
  info.hidden_size = int(hidden->get<uint64_t>());

  // Find the FFN tensors; exactly one naming family and one prefix.
  const Naming* naming = nullptr;
  std::string prefix;
  std::map<int, Found> layers;
  for (const std::string& name : store.names()) {
    auto m = match_ffn_tensor(name);
    if (!m) return m.error();
    if (!*m) continue;
    const Naming* n = naming_named((*m)->naming);
    if (naming && naming != n)
      return user_error("checkpoint mixes FFN naming schemes ('" + std::string(naming->name) +
                        "' and '" + n->name + "' at '" + name +
                        "'); ffnjit handles one decoder stack per checkpoint");
    if (naming && prefix != (*m)->prefix)
      return user_error("FFN tensors under two prefixes ('" + prefix + "' and '" + (*m)->prefix +
                        "'); ffnjit handles one decoder stack per checkpoint");
    naming = n;
    prefix = (*m)->prefix;
    const std::string role = (*m)->role + ((*m)->bias ? ".bias" : ".weight");
    // With one prefix and canonical layer numbers, (layer, role) names one tensor; the
    // check keeps it so should the grammar ever allow two spellings.
    if (auto [it, fresh] = layers[(*m)->layer].roles.emplace(role, name); !fresh)
      return user_error("tensors '" + it->second + "' and '" + name + "' are both layer " +
                        std::to_string((*m)->layer) + "'s " + role + "; remove one");
  }
  if (!naming)
    return user_error(
        "found no FFN weights: expected tensors named like "
        "model.layers.0.mlp.{gate,up,down}_proj.weight "
        "(Llama/Mistral/Qwen), model.decoder.layers.0.fc1.weight (OPT) or h.0.mlp.c_fc.weight "
        "(GPT-2)");
  info.naming = naming->name;

  // The activation decides whether the sparsity kernels are exact.
  const json* act_j = first_of(config, {"hidden_act", "activation_function", "hidden_activation"});
  std::string act = act_j && act_j->is_string() ? act_j->get<std::string>() : "";
  const std::string act_key =
      act_j ? (config.contains("hidden_act")            ? "hidden_act"
               : config.contains("activation_function") ? "activation_function"
                                                        : "hidden_activation")
            : "hidden_act";
  // config.json strings reach messages and notes only as excerpts.
  const auto act_shown = [&] { return text_excerpt(act, 60); };
  if (info.model_type == "llama_sparse_relu") {
    if (act != "relu")
      info.notes.push_back(
          "model_type llama_sparse_relu (SparseLM): the FFN gate is ReLU although " + act_key +
          " says '" + act_shown() + "'");
    act = "relu";
  } else if (act.empty()) {
    act = naming->gated ? "silu"
                        : (info.naming == "opt" ? "relu" : "gelu");  // the families' defaults
  }
  if (act == "squared_relu") act = "relu2";  // Megatron's name for it
  if (act != "relu" && act != "relu2" && act != "fatrelu") {
    const std::string who = info.model_type.empty()
                                ? "this model"
                                : "model_type '" + text_excerpt(info.model_type, 60) + "'";
    return unsupported(
        who + " uses " + act_key + " '" + act_shown() +
        "', not ReLU: the sparsity kernels skip neurons whose " +
        (naming->gated ? "gate" : "activation") +
        " is zero, which is exact only when a ReLU makes inactive neurons exactly 0 (ffnjit serves "
        "relu, relu2 and fatrelu); with '" +
        act_shown() +
        "' every neuron contributes. Use a ReLU-fied checkpoint (e.g. a SparseLM model, model_type "
        "llama_sparse_relu) or run this model with a dense library");
  }
  if (act == "fatrelu") {  // the threshold as MiniCPM (vLLM) names it, or explicitly
    const json* t = first_of(config, {"hidden_act_param", "fatrelu_threshold"});
    if (!t || !t->is_number() || !(t->get<double>() >= 0) || t->get<double>() > 1e30)
      return user_error(
          "config.json: " + act_key +
          " 'fatrelu' needs its threshold as hidden_act_param (or fatrelu_threshold), a "
          "finite number >= 0");
    info.activation_threshold = float(t->get<double>());
  }
  info.activation = act;

  const int hidden_sz = info.hidden_size;
  int expected = -1;
  std::string layers_key = "num_hidden_layers";
  for (const char* k : {"num_hidden_layers", "n_layer", "num_layers"})
    if (const json* n = first_of(config, {k}); n && n->is_number_unsigned()) {
      expected = int(std::min<uint64_t>(n->get<uint64_t>(), 1u << 20));
      layers_key = k;
      break;
    }
  for (int i = 0; i < int(layers.size()); ++i)
    if (!layers.count(i))
      return user_error("FFN weights of layer " + std::to_string(i) + " are missing (found " +
                        std::to_string(layers.size()) + " layers, up to " +
                        std::to_string(layers.rbegin()->first) + "); the checkpoint is incomplete");
  if (expected >= 0 && int(layers.size()) < expected)
    return user_error("config.json says " + std::to_string(expected) +
                      " layers but FFN weights were found for " + std::to_string(layers.size()) +
                      "; the checkpoint is incomplete (a missing shard?)");
  if (expected >= 0 && int(layers.size()) > expected)
    return user_error("FFN weights were found for " + layer_count(layers) + " but config.json's " +
                      layers_key + " says " + std::to_string(expected) +
                      "; the weights and the config disagree (fix num_hidden_layers or remove "
                      "the extra layers' tensors)");

  const bool gpt2 = info.naming == "gpt2";
  const std::string in_role = naming->gated ? "up_proj" : (gpt2 ? "c_fc" : "fc1");
  const std::string out_role = naming->gated ? "down_proj" : (gpt2 ? "c_proj" : "fc2");
  std::vector<std::string> transposed_layers;
  for (const auto& entry : layers) {
    const int idx = entry.first;  // not a structured binding: clang 14 cannot capture those
    const Found& f = entry.second;
    FfnLayer L;
    L.index = idx;
    L.d_model = hidden_sz;
    L.gated = naming->gated;
    auto need = [&](const std::string& role) -> Expected<const st::TensorInfo*> {
      auto it = f.roles.find(role + ".weight");
      if (it == f.roles.end())
        return user_error("layer " + std::to_string(idx) + " has no " + prefix +
                          (gpt2 ? "h." : "layers.") + std::to_string(idx) +
                          (naming->gated || gpt2 ? ".mlp." : ".") + role +
                          ".weight; the checkpoint is incomplete");
      return store.find(it->second)->info;
    };
    auto up = need(in_role);
    if (!up) return up.error();
    auto down = need(out_role);
    if (!down) return down.error();
    int d_ff = 0, d_ff2 = 0;
    FFNJIT_TRY(orient(**up, hidden_sz, true, naming->default_transposed, &d_ff, &L.up_transposed,
                      &info.notes));
    FFNJIT_TRY(orient(**down, hidden_sz, false, naming->default_transposed, &d_ff2,
                      &L.down_transposed, &info.notes));
    L.up = (*up)->name, L.down = (*down)->name, L.dtype = (*up)->dtype;
    if (d_ff2 != d_ff)
      return user_error("layer " + std::to_string(idx) + ": '" + L.up + "' " +
                        shape_str((*up)->shape) + " and '" + L.down + "' " +
                        shape_str((*down)->shape) + " disagree on d_ff (" + std::to_string(d_ff) +
                        " vs " + std::to_string(d_ff2) + ")");
    if (naming->gated) {
      auto gate = need("gate_proj");
      if (!gate) return gate.error();
      FFNJIT_TRY(orient(**gate, hidden_sz, true, false, &d_ff2, &L.gate_transposed, &info.notes));
      L.gate = (*gate)->name;
      if (d_ff2 != d_ff)
        return user_error("layer " + std::to_string(idx) + ": '" + L.gate + "' " +
                          shape_str((*gate)->shape) + " and '" + L.up + "' " +
                          shape_str((*up)->shape) + " disagree on d_ff");
    }
    auto bias = [&](const std::string& role, int64_t want, std::string* out) -> Status {
      if (auto it = f.roles.find(role + ".bias"); it != f.roles.end()) {
        FFNJIT_TRY(check_bias(*store.find(it->second)->info, want));
        *out = it->second;
      }
      return {};
    };
    if (naming->gated) FFNJIT_TRY(bias("gate_proj", d_ff, &L.gate_bias));
    FFNJIT_TRY(bias(in_role, d_ff, &L.up_bias));
    FFNJIT_TRY(bias(out_role, hidden_sz, &L.down_bias));
    // transformers' mlp_bias gives gate_proj, up_proj and down_proj a bias together.
    if (naming->gated && L.has_bias() &&
        (L.gate_bias.empty() || L.up_bias.empty() || L.down_bias.empty()))
      return user_error("layer " + std::to_string(idx) + " has biases for only some of " +
                        "gate_proj, up_proj and down_proj; a Llama-style MLP (mlp_bias) has all "
                        "three or none");
    L.d_ff = d_ff;
    if (L.gate_transposed || L.up_transposed || L.down_transposed)
      transposed_layers.push_back(std::to_string(idx));
    info.layers.push_back(std::move(L));
  }
  if (!transposed_layers.empty())
    info.notes.push_back(
        "transposed FFN weights (stored as [d_model][d_ff] for the input projections) in layers " +
        join(transposed_layers, ", ") + "; ffnjit transposes them on load");

  // Fingerprint: canonical config, every tensor's description, samples of the FFN bytes.
  Sha256 h;
  h.update("ffnjit-checkpoint-fingerprint-v1\n");
  // Cannot recurse deeply (parse_json bounds the nesting) nor throw (parsed JSON is
  // UTF-8; a caller's tree with other bytes gets U+FFFD).
  h.update(dump_json(config));
  h.update("\n");
  for (const std::string& name : store.names()) {
    const st::TensorInfo& t = *store.find(name)->info;
    h.update(name + " " + st::dtype_name(t.dtype) + " " + shape_str(t.shape) + "\n");
  }
  for (const FfnLayer& L : info.layers)
    for (const std::string* n : {&L.gate, &L.up, &L.down, &L.gate_bias, &L.up_bias, &L.down_bias})
      if (!n->empty()) sample_bytes(h, store.find(*n)->raw());
  info.fingerprint = h.hex_digest();
  return info;
}

Expected<Checkpoint> Checkpoint::open(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(path, ec))
    return user_error(
        path + ": not a directory; a checkpoint is a directory with config.json and *.safetensors");
  const std::string cfg_path = (fs::path(path) / "config.json").string();
  auto text = read_input_file(cfg_path, "config.json", kMaxConfigJsonBytes);
  if (!text) {
    if (text.error().kind == ErrorKind::kNotFound)
      return not_found(cfg_path + ": missing; a checkpoint directory needs config.json");
    return text.error();
  }
  auto cfg = parse_json(*text, cfg_path + ": not valid JSON");
  if (!cfg) return cfg.error();
  auto store = st::Store::open(path);
  if (!store) return store.error();
  Checkpoint c(std::move(*store));
  c.path_ = path;
  c.config_ = std::move(*cfg);
  auto info = discover(c.config_, c.store_);
  if (!info) return Error{info.error().kind, path + ": " + info.error().message};
  c.info_ = std::move(*info);
  return c;
}

namespace {
Expected<std::vector<uint16_t>> load_matrix(const st::Store& s, const std::string& name,
                                            bool transposed) {
  auto v = st::to_bf16(*s.find(name));
  if (!v || !transposed) return v;
  const auto& shape = s.find(name)->info->shape;
  const size_t rows = size_t(shape[0]), cols = size_t(shape[1]);
  std::vector<uint16_t> t(v->size());
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) t[c * rows + r] = (*v)[r * cols + c];
  return t;
}
}  // namespace

Expected<LayerWeights> Checkpoint::load_layer(int index) const {
  const FfnLayer* L = nullptr;
  for (const auto& l : info_.layers)
    if (l.index == index) L = &l;
  if (!L)
    return user_error("layer " + std::to_string(index) +
                      " does not exist; the checkpoint has layers 0.." +
                      std::to_string(int(info_.layers.size()) - 1));
  LayerWeights w;
  w.index = index, w.d_model = L->d_model, w.d_ff = L->d_ff, w.gated = L->gated;
  if (L->gated) {
    auto g = load_matrix(store_, L->gate, L->gate_transposed);
    if (!g) return g.error();
    w.wg = std::move(*g);
  }
  auto u = load_matrix(store_, L->up, L->up_transposed);
  if (!u) return u.error();
  w.wu = std::move(*u);
  auto d = load_matrix(store_, L->down, L->down_transposed);
  if (!d) return d.error();
  w.wd = std::move(*d);
  // Biases in bf16, the kernels' type (as floats): the reference and the profile then
  // add exactly what the kernels add.
  for (auto [name, out] :
       {std::pair{&L->gate_bias, &w.gate_bias}, std::pair{&L->up_bias, &w.up_bias},
        std::pair{&L->down_bias, &w.down_bias}}) {
    if (name->empty()) continue;
    auto b = st::to_bf16(*store_.find(*name));
    if (!b) return b.error();
    for (uint16_t v : *b) out->push_back(bf16_to_float(v));
  }
  w.activation = info_.activation == "relu2"     ? ref::Activation::kRelu2
                 : info_.activation == "fatrelu" ? ref::Activation::kFatRelu
                                                 : ref::Activation::kRelu;
  w.activation_threshold = info_.activation_threshold;
  return w;
}

}  // namespace ffnjit::model
