// Unit tests of the model side of biases and ReLU-family activations: config.json's
// activation mapping, bias loading, the layer shape the kernels are generated for, the
// profiler's gate and the permutation of per-neuron biases. No GPU.
#include <catch2/catch.hpp>

#include <cstring>

#include "model/checkpoint.hpp"
#include "model/profiler.hpp"
#include "model/specialize.hpp"
#include "runtime/device_weights.hpp"
#include "support/bf16.hpp"
#include "tests/unit/model_test_util.hpp"

using namespace ffnjit;
using nlohmann::json;

namespace {

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  st::Dtype dtype = st::Dtype::kBF16;
  std::vector<float> values;  // empty: a fixed pattern
};

// config.json and one safetensors file; values as given (converted to the dtype) or a
// deterministic pattern.
void write_checkpoint(const testutil::TempDir& dir, const json& config,
                      const std::vector<Tensor>& tensors) {
  testutil::write_text(dir / "config.json", config.dump());
  std::vector<std::string> bytes;
  for (const auto& t : tensors) {
    size_t n = 1;
    for (auto s : t.shape) n *= size_t(s);
    std::string b;
    for (size_t i = 0; i < n; ++i) {
      const float v = t.values.empty() ? 0.01f * float(int(i % 17) - 8) : t.values[i];
      if (t.dtype == st::Dtype::kF32) {
        b.append(reinterpret_cast<const char*>(&v), 4);
      } else {
        const uint16_t h = float_to_bf16(v);
        b.append(reinterpret_cast<const char*>(&h), 2);
      }
    }
    bytes.push_back(std::move(b));
  }
  std::vector<st::WriteTensor> w;
  for (size_t i = 0; i < tensors.size(); ++i)
    w.push_back({tensors[i].name, tensors[i].dtype, tensors[i].shape, bytes[i]});
  REQUIRE(st::write_file(dir / "model.safetensors", w));
}

std::vector<Tensor> llama(int dm, int dff) {
  const std::string p = "model.layers.0.mlp.";
  return {{p + "gate_proj.weight", {dff, dm}},
          {p + "up_proj.weight", {dff, dm}},
          {p + "down_proj.weight", {dm, dff}}};
}

json config(const std::string& act, json extra = json::object()) {
  json c = {
      {"model_type", "llama"}, {"hidden_act", act}, {"hidden_size", 16}, {"num_hidden_layers", 1}};
  c.update(extra);
  return c;
}

Expected<model::Checkpoint> open(const testutil::TempDir& d) {
  return model::Checkpoint::open(d.path.string());
}

}  // namespace

TEST_CASE("config activations: relu2, squared_relu and fatrelu with its threshold") {
  for (const char* name : {"relu2", "squared_relu"}) {
    testutil::TempDir d;
    write_checkpoint(d, config(name), llama(16, 48));
    auto c = open(d);
    INFO(name);
    REQUIRE(c);
    CHECK(c->info().activation == "relu2");
    auto w = c->load_layer(0);
    REQUIRE(w);
    CHECK(w->activation == ref::Activation::kRelu2);
    auto shape = checkpoint_layer_shape(c->info(), c->info().layers[0]);
    REQUIRE(shape);
    CHECK(shape->activation == Activation::kRelu2);
  }
  // MiniCPM / vLLM name the threshold hidden_act_param; fatrelu_threshold also works.
  for (auto [key, t] :
       {std::pair{"hidden_act_param", 0.125}, std::pair{"fatrelu_threshold", 0.5}}) {
    testutil::TempDir d;
    write_checkpoint(d, config("fatrelu", {{key, t}}), llama(16, 48));
    auto c = open(d);
    INFO(key);
    REQUIRE(c);
    CHECK(c->info().activation == "fatrelu");
    CHECK(c->info().activation_threshold == float(t));
    auto w = c->load_layer(0);
    REQUIRE(w);
    CHECK(w->activation == ref::Activation::kFatRelu);
    CHECK(w->activation_threshold == float(t));
    CHECK(w->view().threshold == float(t));
    CHECK(w->view().activation == ref::Activation::kFatRelu);
    auto shape = checkpoint_layer_shape(c->info(), c->info().layers[0]);
    REQUIRE(shape);
    CHECK(shape->activation == Activation::kFatRelu);
    CHECK(host_weights(*w, *shape).threshold == float(t));
  }
  for (json extra :
       {json::object(), json{{"hidden_act_param", -0.1}}, json{{"hidden_act_param", "0.1"}}}) {
    testutil::TempDir d;
    write_checkpoint(d, config("fatrelu", extra), llama(16, 48));
    auto c = open(d);
    INFO(extra.dump());
    REQUIRE_FALSE(c);
    CHECK(c.error().kind == ErrorKind::kInvalidArgument);
    CHECK_THAT(c.error().message,
               Catch::Contains("hidden_act 'fatrelu' needs its threshold as hidden_act_param "
                               "(or fatrelu_threshold), a finite number >= 0"));
  }
  // Anything else stays refused, naming what is served.
  testutil::TempDir d;
  write_checkpoint(d, config("gelu"), llama(16, 48));
  auto c = open(d);
  REQUIRE_FALSE(c);
  CHECK(c.error().kind == ErrorKind::kUnsupported);
  CHECK_THAT(c.error().message, Catch::Contains("uses hidden_act 'gelu', not ReLU") &&
                                    Catch::Contains("ffnjit serves relu, relu2 and fatrelu"));
}

TEST_CASE("OPT biases: loaded in bf16, in the reference view and in the kernels' layer shape") {
  testutil::TempDir d;
  const std::string p = "model.decoder.layers.0.";
  // F32 biases that bf16 cannot hold exactly: the loaded values are what the kernels add.
  std::vector<float> b1(64), b2(16);
  for (int i = 0; i < 64; ++i) b1[i] = 0.1f + 0.001f * float(i);
  for (int i = 0; i < 16; ++i) b2[i] = -0.3f + 0.0007f * float(i);
  write_checkpoint(d, {{"model_type", "opt"}, {"activation_function", "relu"}, {"hidden_size", 16}},
                   {{p + "fc1.weight", {64, 16}},
                    {p + "fc1.bias", {64}, st::Dtype::kF32, b1},
                    {p + "fc2.weight", {16, 64}},
                    {p + "fc2.bias", {16}, st::Dtype::kF32, b2}});
  auto c = open(d);
  REQUIRE(c);
  for (const auto& note : c->info().notes) CHECK_THAT(note, !Catch::Contains("do not take biases"));
  auto w = c->load_layer(0);
  REQUIRE(w);
  REQUIRE(w->up_bias.size() == 64);
  REQUIRE(w->down_bias.size() == 16);
  CHECK(w->gate_bias.empty());
  for (int i = 0; i < 64; ++i) CHECK(w->up_bias[i] == bf16_to_float(float_to_bf16(b1[i])));
  for (int i = 0; i < 16; ++i) CHECK(w->down_bias[i] == bf16_to_float(float_to_bf16(b2[i])));
  CHECK(w->up_bias[1] != b1[1]);  // the values were rounded
  const ref::FfnWeights v = w->view();
  CHECK(v.up_bias == w->up_bias.data());
  CHECK(v.down_bias == w->down_bias.data());
  CHECK(v.gate_bias == nullptr);
  auto shape = checkpoint_layer_shape(c->info(), c->info().layers[0]);
  REQUIRE(shape);
  CHECK_FALSE(shape->gated);
  CHECK_FALSE(shape->gate_bias);
  CHECK(shape->up_bias);
  CHECK(shape->down_bias);
  CHECK(shape->activation == Activation::kRelu);
  const HostFfnWeights h = host_weights(*w, *shape);
  CHECK(h.wg == nullptr);
  CHECK(h.up_bias == w->up_bias.data());
  CHECK(h.down_bias == w->down_bias.data());
  CHECK(h.gate_bias == nullptr);
  // The fp64 reference adds them: a token of zeros gives relu(b1) . Wd^T + b2.
  std::vector<uint16_t> x(16, 0);
  std::vector<double> out(16);
  ref::ffn_forward(v, x.data(), {0}, out.data());
  for (int dm = 0; dm < 16; ++dm) {
    double want = w->down_bias[dm];
    for (int j = 0; j < 64; ++j)
      want += double(w->up_bias[j]) * bf16_to_float(w->wd[size_t(dm) * 64 + j]);
    CHECK(out[dm] == Approx(want).epsilon(1e-12));
  }
}

TEST_CASE("the profiler's gate adds the gate projection's bias and applies fatrelu's threshold") {
  model::LayerWeights w;
  w.index = 0, w.d_model = 8, w.d_ff = 4, w.gated = true;
  w.wg.assign(32, float_to_bf16(0.25f));  // x . Wg_j = 8 * 0.25 = 2 for x = 1
  w.wu.assign(32, float_to_bf16(1.0f));
  w.wd.assign(32, float_to_bf16(1.0f));
  w.gate_bias = {-3.0f, -1.0f, 0.5f, 1.0f};
  w.up_bias = {100.0f, 100.0f, 100.0f, 100.0f};  // a gated layer's up bias is not the gate's
  std::vector<uint16_t> x(8, float_to_bf16(1.0f));
  std::vector<float> g(4);
  REQUIRE(model::cpu_gate(1)(w, x.data(), 1, g.data()));
  CHECK(g == std::vector<float>{-1.0f, 1.0f, 2.5f, 3.0f});
  w.activation = ref::Activation::kFatRelu, w.activation_threshold = 2.5f;
  REQUIRE(model::cpu_gate(1)(w, x.data(), 1, g.data()));
  CHECK(g == std::vector<float>{0.0f, 0.0f, 0.0f, 3.0f});  // only z > 2.5 stays
}

TEST_CASE("a neuron permutation moves the gate and up biases with their rows") {
  model::LayerWeights w;
  w.index = 0, w.d_model = 8, w.d_ff = 4, w.gated = true;
  w.wg.assign(32, 0), w.wu.assign(32, 0), w.wd.assign(32, 0);
  w.gate_bias = {0, 1, 2, 3};
  w.up_bias = {10, 11, 12, 13};
  w.down_bias = {5, 5, 5, 5, 5, 5, 5, 5};
  REQUIRE(model::permute_layer(w, {2, 0, 3, 1}));
  CHECK(w.gate_bias == std::vector<float>{2, 0, 3, 1});
  CHECK(w.up_bias == std::vector<float>{12, 10, 13, 11});
  CHECK(w.down_bias == std::vector<float>(8, 5));  // per output column: unchanged
}
