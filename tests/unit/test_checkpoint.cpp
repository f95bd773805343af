// Unit tests of config.json + FFN discovery, the fingerprint, layer loading and the demo generator.
#include <catch2/catch.hpp>

#include <random>

#include "model/checkpoint.hpp"
#include "model/demo.hpp"
#include "model/profiler.hpp"
#include "support/bf16.hpp"
#include "tests/unit/model_test_util.hpp"

using namespace ffnjit;
using nlohmann::json;

namespace {

struct T {
  std::string name;
  std::vector<int64_t> shape;
  st::Dtype dtype = st::Dtype::kBF16;
};

// Writes config.json and random tensors into `dir` (sharded when shards > 1).
void make_checkpoint(const testutil::TempDir& dir, const json& config,
                     const std::vector<T>& tensors, int shards = 1, uint32_t seed = 1) {
  testutil::write_text(dir / "config.json", config.dump());
  std::mt19937 rng(seed);
  std::vector<std::string> bytes;
  for (const auto& t : tensors) {
    size_t n = 1;
    for (auto s : t.shape) n *= size_t(s);
    std::string b(n * st::dtype_size(t.dtype), '\0');
    for (auto& c : b) c = char(rng() & 0x3f);  // small positive-exponent-free values
    bytes.push_back(std::move(b));
  }
  std::vector<st::WriteTensor> w;
  for (size_t i = 0; i < tensors.size(); ++i)
    w.push_back({tensors[i].name, tensors[i].dtype, tensors[i].shape, bytes[i]});
  if (shards > 1)
    REQUIRE(st::write_sharded(dir.path.string(), w, shards));
  else
    REQUIRE(st::write_file(dir / "model.safetensors", w));
}

std::vector<T> llama(int layers, int dm, int dff, bool transpose_gate_of_layer1 = false) {
  std::vector<T> t = {{"model.embed_tokens.weight", {32, dm}}, {"model.norm.weight", {dm}}};
  for (int l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const bool tr = transpose_gate_of_layer1 && l == 1;
    t.push_back({p + "mlp.gate_proj.weight",
                 tr ? std::vector<int64_t>{dm, dff} : std::vector<int64_t>{dff, dm}});
    t.push_back({p + "mlp.up_proj.weight", {dff, dm}});
    t.push_back({p + "mlp.down_proj.weight", {dm, dff}});
    t.push_back({p + "self_attn.q_proj.weight", {dm, dm}});
  }
  return t;
}

json llama_config(const std::string& model_type, const std::string& act, int layers = 2,
                  int dm = 16) {
  return {{"model_type", model_type},
          {"hidden_act", act},
          {"hidden_size", dm},
          {"intermediate_size", 48},
          {"num_hidden_layers", layers}};
}

Expected<model::Checkpoint> open(const testutil::TempDir& d) {
  return model::Checkpoint::open(d.path.string());
}

}  // namespace

TEST_CASE("gated Llama-style ReLU model: layers, shapes, names, dtype") {
  testutil::TempDir d;
  make_checkpoint(d, llama_config("llama", "relu"), llama(2, 16, 48));
  auto c = open(d);
  REQUIRE(c);
  const auto& info = c->info();
  CHECK(info.naming == "llama");
  CHECK(info.activation == "relu");
  REQUIRE(info.layers.size() == 2);
  CHECK(info.layers[1].index == 1);
  CHECK(info.layers[1].d_model == 16);
  CHECK(info.layers[1].d_ff == 48);
  CHECK(info.layers[1].gated);
  CHECK(info.layers[1].gate == "model.layers.1.mlp.gate_proj.weight");
  CHECK(info.layers[1].down == "model.layers.1.mlp.down_proj.weight");
  CHECK(info.layers[0].dtype == st::Dtype::kBF16);
  CHECK_FALSE(info.layers[0].gate_transposed);
  CHECK(info.fingerprint.size() == 64);
}

TEST_CASE("SparseLM: model_type llama_sparse_relu has a ReLU gate although hidden_act says silu") {
  testutil::TempDir d;
  make_checkpoint(d, llama_config("llama_sparse_relu", "silu"), llama(2, 16, 48));
  auto c = open(d);
  REQUIRE(c);
  CHECK(c->info().activation == "relu");
  REQUIRE_FALSE(c->info().notes.empty());
  CHECK_THAT(c->info().notes[0],
             Catch::Contains("llama_sparse_relu") && Catch::Contains("hidden_act says 'silu'"));
}

TEST_CASE("a SiLU Llama is refused, saying why the sparsity kernels do not apply") {
  testutil::TempDir d;
  make_checkpoint(d, llama_config("llama", "silu"), llama(2, 16, 48));
  auto c = open(d);
  REQUIRE_FALSE(c);
  CHECK(c.error().kind == ErrorKind::kUnsupported);
  CHECK_THAT(c.error().message,
             Catch::Contains("model_type 'llama' uses hidden_act 'silu', not ReLU") &&
                 Catch::Contains("exact only when a ReLU makes inactive neurons exactly 0") &&
                 Catch::Contains("llama_sparse_relu"));
  // A gated model that does not name its activation defaults to SiLU, as in transformers.
  testutil::TempDir d2;
  make_checkpoint(d2, {{"model_type", "mistral"}, {"hidden_size", 16}}, llama(1, 16, 48));
  CHECK_THAT(open(d2).error().message, Catch::Contains("'silu', not ReLU"));
}

TEST_CASE("OPT-style non-gated fc1/fc2 with biases") {
  testutil::TempDir d;
  std::vector<T> t;
  for (int l = 0; l < 3; ++l) {
    const std::string p = "model.decoder.layers." + std::to_string(l) + ".";
    t.push_back({p + "fc1.weight", {64, 16}, st::Dtype::kF16});
    t.push_back({p + "fc1.bias", {64}, st::Dtype::kF16});
    t.push_back({p + "fc2.weight", {16, 64}, st::Dtype::kF16});
    t.push_back({p + "fc2.bias", {16}, st::Dtype::kF16});
  }
  make_checkpoint(d,
                  {{"model_type", "opt"},
                   {"activation_function", "relu"},
                   {"hidden_size", 16},
                   {"ffn_dim", 64},
                   {"num_hidden_layers", 3}},
                  t);
  auto c = open(d);
  REQUIRE(c);
  REQUIRE(c->info().layers.size() == 3);
  const auto& L = c->info().layers[2];
  CHECK_FALSE(L.gated);
  CHECK(L.gate.empty());
  CHECK(L.up == "model.decoder.layers.2.fc1.weight");
  CHECK(L.down == "model.decoder.layers.2.fc2.weight");
  CHECK(L.up_bias == "model.decoder.layers.2.fc1.bias");
  CHECK(L.d_ff == 64);
  CHECK(L.dtype == st::Dtype::kF16);
  auto w = c->load_layer(2);
  REQUIRE(w);
  CHECK(w->wg.empty());
  CHECK(w->wu.size() == 64 * 16);
  CHECK(w->up_bias.size() == 64);
  CHECK(w->down_bias.size() == 16);
  // OPT's default activation is ReLU; GPT-2's (gelu) is refused.
  testutil::TempDir d2;
  make_checkpoint(d2, {{"model_type", "gpt2"}, {"activation_function", "gelu_new"}, {"n_embd", 16}},
                  {{"h.0.mlp.c_fc.weight", {16, 64}}, {"h.0.mlp.c_proj.weight", {64, 16}}});
  CHECK_THAT(open(d2).error().message, Catch::Contains("activation_function 'gelu_new', not ReLU"));
}

TEST_CASE("transposed layouts are detected by shape, noted, and undone on load") {
  testutil::TempDir d;
  make_checkpoint(d, llama_config("llama", "relu", 2),
                  llama(2, 16, 48, /*transpose layer 1's gate*/ true));
  auto c = open(d);
  REQUIRE(c);
  CHECK_FALSE(c->info().layers[0].gate_transposed);
  CHECK(c->info().layers[1].gate_transposed);
  CHECK_FALSE(c->info().layers[1].up_transposed);
  bool noted = false;
  for (const auto& n : c->info().notes)
    noted |= n.find("transposed FFN weights") != std::string::npos &&
             n.find("layers 1") != std::string::npos;
  CHECK(noted);
  auto w = c->load_layer(1);
  REQUIRE(w);
  auto raw = st::to_bf16(*c->tensors().find("model.layers.1.mlp.gate_proj.weight"));  // [16][48]
  for (int j = 0; j < 48; ++j)
    for (int k = 0; k < 16; ++k) REQUIRE(w->wg[size_t(j) * 16 + k] == (*raw)[size_t(k) * 48 + j]);
  // GPT-2 Conv1D: [in][out] everywhere, ReLU allowed.
  testutil::TempDir g;
  make_checkpoint(
      g, {{"model_type", "gpt2"}, {"activation_function", "relu"}, {"n_embd", 16}, {"n_layer", 1}},
      {{"transformer.h.0.mlp.c_fc.weight", {16, 64}},
       {"transformer.h.0.mlp.c_proj.weight", {64, 16}}});
  auto gc = open(g);
  REQUIRE(gc);
  CHECK(gc->info().naming == "gpt2");
  CHECK(gc->info().layers[0].up_transposed);
  CHECK(gc->info().layers[0].down_transposed);
  CHECK(gc->info().layers[0].d_ff == 64);
}

TEST_CASE("inconsistent or incomplete checkpoints are refused with the tensor named") {
  auto err = [](const json& cfg, const std::vector<T>& t) {
    testutil::TempDir d;
    make_checkpoint(d, cfg, t);
    auto c = open(d);
    return c ? std::string() : c.error().message;
  };
  auto t = llama(3, 16, 48);
  t.erase(std::remove_if(t.begin(), t.end(),
                         [](const T& x) { return x.name == "model.layers.1.mlp.up_proj.weight"; }),
          t.end());
  CHECK_THAT(err(llama_config("llama", "relu", 3), t),
             Catch::Contains("layer 1 has no model.layers.1.mlp.up_proj.weight"));
  CHECK_THAT(err(llama_config("llama", "relu", 4), llama(3, 16, 48)),
             Catch::Contains("says 4 layers but FFN weights were found for 3"));
  auto skip = llama(3, 16, 48);
  skip.erase(
      std::remove_if(skip.begin(), skip.end(),
                     [](const T& x) { return x.name.find("layers.1.mlp") != std::string::npos; }),
      skip.end());
  CHECK_THAT(err(llama_config("llama", "relu", 3), skip),
             Catch::Contains("FFN weights of layer 1 are missing"));
  auto bad = llama(1, 16, 48);
  bad[3].shape = {40, 16};  // up_proj
  CHECK_THAT(err(llama_config("llama", "relu", 1), bad),
             Catch::Contains("disagree on d_ff (40 vs 48)"));
  auto odd = llama(1, 16, 48);
  odd[2].shape = {48, 20};  // gate_proj
  CHECK_THAT(err(llama_config("llama", "relu", 1), odd),
             Catch::Contains("neither dimension is config.json's hidden_size=16"));
  auto q = llama(1, 16, 48);
  q[2].dtype = st::Dtype::kI8;
  CHECK_THAT(err(llama_config("llama", "relu", 1), q),
             Catch::Contains("has dtype I8") && Catch::Contains("dequantize"));
  CHECK_THAT(err({{"model_type", "llama"}, {"hidden_act", "relu"}}, llama(1, 16, 48)),
             Catch::Contains("needs hidden_size"));
  CHECK_THAT(err(llama_config("llama", "relu", 1), {{"model.norm.weight", {16}}}),
             Catch::Contains("found no FFN weights"));
  testutil::TempDir nocfg;
  CHECK_THAT(open(nocfg).error().message, Catch::Contains("config.json: missing"));
}

TEST_CASE("fingerprint: independent of path and sharding, sensitive to weights and config") {
  testutil::TempDir a, b, c, e;
  make_checkpoint(a, llama_config("llama", "relu"), llama(2, 16, 48), 1, 7);
  make_checkpoint(b, llama_config("llama", "relu"), llama(2, 16, 48), 3, 7);
  make_checkpoint(c, llama_config("llama", "relu"), llama(2, 16, 48), 1, 8);
  auto cfg = llama_config("llama", "relu");
  cfg["rope_theta"] = 10000;
  make_checkpoint(e, cfg, llama(2, 16, 48), 1, 7);
  auto fa = open(a)->info().fingerprint;
  CHECK(open(b)->tensors().sharded());
  CHECK(open(b)->info().fingerprint == fa);
  CHECK(open(c)->info().fingerprint != fa);
  CHECK(open(e)->info().fingerprint != fa);
}

TEST_CASE(
    "demo checkpoint: real files that round-trip, deterministic, with the promised sparsity") {
  testutil::TempDir d1, d2, d3;
  model::DemoOptions o;
  o.layers = 2, o.d_model = 128, o.d_ff = 512, o.tokens = 1024, o.seed = 5;
  REQUIRE(model::write_demo_checkpoint(d1.path.string(), o));
  REQUIRE(model::write_demo_checkpoint(d2.path.string(), o));
  o.seed = 6;
  o.shards = 2;
  REQUIRE(model::write_demo_checkpoint(d3.path.string(), o));
  auto c1 = open(d1), c2 = open(d2), c3 = open(d3);
  REQUIRE(c1);
  REQUIRE(c3);
  CHECK(c1->info().model_type == "llama_sparse_relu");
  CHECK(c1->info().layers.size() == 2);
  CHECK(c1->info().layers[0].d_ff == 512);
  CHECK(c1->info().fingerprint == c2->info().fingerprint);  // same seed, same bytes
  CHECK(c1->info().fingerprint != c3->info().fingerprint);
  CHECK(c3->tensors().sharded());
  // Written bytes read back bit-identically (the writer's round trip through mmap).
  auto w = c1->load_layer(0);
  REQUIRE(w);
  CHECK(w->wg.size() == 512u * 128u);
  auto raw = c1->tensors().find("model.layers.0.mlp.down_proj.weight")->raw();
  CHECK(std::memcmp(raw.data(), w->wd.data(), raw.size()) == 0);

  auto in = st::Store::open(d1 / "inputs.safetensors");
  REQUIRE(in);
  auto inputs = model::load_layer_inputs(*in, c1->info());
  REQUIRE(inputs);
  REQUIRE(inputs->size() == 2);
  CHECK((*inputs)[0].tokens == 1024);
  auto run = model::profile_checkpoint(*c1, *inputs, {}, model::cpu_gate());
  REQUIRE(run);
  double mean = 0;
  for (const auto& l : run->profile.layers) mean += l.per_token.mean() / l.d_ff / 2;
  CHECK(mean > 0.003);  // ~0.5% of neurons per token on average over the layers
  CHECK(mean < 0.008);
  const auto& l0 = run->profile.layers[0];
  CHECK(double(l0.dead_neurons.size()) / l0.d_ff ==
        Approx(0.3).margin(0.06));                                // ~30% dead in layer 0
  CHECK(l0.per_token.quantile(0.99) >= 2 * l0.per_token.mean());  // heavy-tailed tokens
  uint64_t hottest = *std::max_element(l0.neuron_active.begin(), l0.neuron_active.end());
  CHECK(double(hottest) / double(l0.tokens) > 10 * l0.per_token.mean() / l0.d_ff);  // hot neurons
}
