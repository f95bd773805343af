// Unit tests of sparsity profiles: builder statistics, JSON round trip, strict reader errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "model/profile.hpp"
#include "tests/unit/model_test_util.hpp"

using namespace ffnjit;
using nlohmann::json;

namespace {

// A small profile with heavy-tailed random activity; gate values > 0 mark active neurons.
profile::Profile sample_profile(std::vector<float>* gate_out = nullptr, int tokens = 300,
                                int d_ff = 100) {
  std::mt19937 rng(11);
  std::vector<float> g(size_t(tokens) * d_ff);
  for (int m = 0; m < tokens; ++m) {
    const double p = (m % 50 == 0) ? 0.4 : 0.05;
    for (int j = 0; j < d_ff; ++j)
      g[size_t(m) * d_ff + j] =
          (j % 10 != 3 && std::uniform_real_distribution<>(0, 1)(rng) < p) ? 1.0f : -1.0f;
  }
  g[5] = NAN;  // NaN counts as active, like TwELL packing
  profile::Builder::Options o;
  o.tile_widths = {8, 32};
  profile::Builder b(o);
  REQUIRE(b.add_layer(2, 64, d_ff, true));
  REQUIRE(b.add_gate(2, g.data(), tokens / 2));
  REQUIRE(b.add_gate(2, g.data() + size_t(tokens / 2) * d_ff, tokens - tokens / 2));
  if (gate_out) *gate_out = g;
  return b.finish(std::string(64, 'c'), "llama_sparse_relu", "unit test");
}

std::string err(const json& j) {
  auto p = profile::parse(j.dump(), "p.json");
  return p ? std::string() : p.error().message;
}

}  // namespace

TEST_CASE("histogram quantiles use the nearest-rank rule in exact arithmetic") {
  profile::Histogram h;
  h.bins = {{0, 5}, {1, 4}, {7, 1}};  // 10 samples
  CHECK(h.total() == 10);
  CHECK(h.quantile(0.5) == 0);
  CHECK(h.quantile(0.51) == 1);
  CHECK(h.quantile(0.9) == 1);  // rank ceil(0.9 * 10) = 9, not 10
  CHECK(h.quantile(0.91) == 7);
  CHECK(h.quantile(0.999) == 7);
  CHECK(h.max() == 7);
  CHECK(h.mean() == Approx(1.1));
  CHECK(h.count_above(1) == 1);
  CHECK(profile::Histogram{}.quantile(0.5) == 0);
}

TEST_CASE("builder statistics match a brute-force count") {
  std::vector<float> g;
  const auto p = sample_profile(&g);
  REQUIRE(p.layers.size() == 1);
  const auto& l = p.layers[0];
  CHECK(l.index == 2);
  CHECK(l.tokens == 300);
  std::vector<uint64_t> per_neuron(100, 0);
  std::vector<uint32_t> per_token;
  uint32_t tile_max8[13] = {};
  for (int m = 0; m < 300; ++m) {
    uint32_t n = 0, t8[13] = {};
    for (int j = 0; j < 100; ++j)
      if (!(g[size_t(m) * 100 + j] <= 0)) ++n, per_neuron[j]++, t8[j / 8]++;
    per_token.push_back(n);
    for (int t = 0; t < 13; ++t) tile_max8[t] = std::max(tile_max8[t], t8[t]);
  }
  CHECK(l.neuron_active == per_neuron);
  CHECK(l.per_token.max() == *std::max_element(per_token.begin(), per_token.end()));
  REQUIRE(l.tiling(8));
  CHECK(l.tiling(8)->n_tiles == 13);
  CHECK(l.tiling(8)->per_tile.total() == 300u * 13u);
  for (int t = 0; t < 13; ++t) CHECK(l.tiling(8)->tile_max[t] == tile_max8[t]);
  CHECK(l.tiling(32)->n_tiles == 4);
  // Neurons 3, 13, ... never fire (except neuron 5 of token 0 is NaN, active).
  CHECK(l.dead_neurons.size() == 10);
  CHECK(l.dead_neurons[0] == 3);
  CHECK(l.firing_rate(5) > 0);
}

TEST_CASE("profiles round-trip through JSON and files") {
  const auto p = sample_profile();
  const std::string text = profile::to_json(p);
  auto q = profile::parse(text);
  REQUIRE(q);
  CHECK(profile::to_json(*q) == text);
  testutil::TempDir d;
  REQUIRE(profile::write(d / "p.json", p));
  auto r = profile::read(d / "p.json");
  REQUIRE(r);
  CHECK(r->fingerprint == p.fingerprint);
  CHECK(r->layers[0].neuron_active == p.layers[0].neuron_active);
  CHECK(profile::read(d / "missing.json").error().kind == ErrorKind::kNotFound);
}

TEST_CASE("active sets and gate values give the same profile") {
  std::vector<float> g;
  const auto p = sample_profile(&g);
  profile::ActiveSets s;
  s.d_ff = 100;
  std::vector<uint32_t> row;
  for (int m = 0; m < 300; ++m) {
    row.clear();
    for (uint32_t j = 0; j < 100; ++j)
      if (!(g[size_t(m) * 100 + j] <= 0)) row.push_back(j);
    s.add_token(row.data(), row.size());
  }
  profile::Builder::Options o;
  o.tile_widths = {8, 32};
  profile::Builder b(o);
  REQUIRE(b.add_layer(2, 64, 100, true));
  REQUIRE(b.add_active(2, s));
  CHECK(profile::to_json(b.finish(p.fingerprint, p.model_type, p.source)) == profile::to_json(p));
  CHECK(b.sample(2)->tokens() == 300);
  profile::ActiveSets bad = s;
  bad.neurons[1] = 100;
  CHECK_FALSE(b.add_active(2, bad));
  CHECK_THAT(b.add_gate(9, g.data(), 1).message(), Catch::Contains("layer 9 was not added"));
  CHECK_THAT(b.add_layer(2, 64, 100, true).message(), Catch::Contains("already added"));
}

TEST_CASE("schema violations are errors that name the field") {
  const json good = json::parse(profile::to_json(sample_profile()));
  REQUIRE(err(good).empty());
  struct Case {
    std::function<void(json&)> mutate;
    std::string want;
  };
  const Case cases[] = {
      {[](json& j) { j["format"] = "other"; }, "format: not an ffnjit profile"},
      {[](json& j) { j.erase("format"); }, "format: not an ffnjit profile"},
      {[](json& j) { j["version"] = 2; }, "version: 2 is not the version this ffnjit reads (1)"},
      {[](json& j) { j["extra"] = 1; }, "unknown field 'extra'"},
      {[](json& j) { j.erase("source"); }, "missing field 'source'"},
      {[](json& j) { j["checkpoint"]["fingerprint"] = "xyz"; },
       "checkpoint.fingerprint: must be 64 lower-case hex digits"},
      {[](json& j) { j["checkpoint"]["model_type"] = 3; },
       "checkpoint.model_type: must be a string"},
      {[](json& j) { j["layers"] = json::object(); }, "layers: must be an array"},
      {[](json& j) { j["layers"][0]["d_ff"] = 0; }, "layers[0].d_ff: must be >= 1"},
      {[](json& j) { j["layers"][0]["d_ff"] = -5; },
       "layers[0].d_ff: must be a non-negative integer"},
      {[](json& j) { j["layers"][0]["gated"] = "yes"; }, "layers[0].gated: must be true or false"},
      {[](json& j) { j["layers"][0]["tokens"] = 301; },
       "layers[0].active_per_token.histogram: counts sum to 300 but the layer has 301"},
      {[](json& j) { j["layers"][0]["active_per_token"]["p99"] = 1; },
       "layers[0].active_per_token.p99: is 1 but the histogram gives"},
      {[](json& j) { j["layers"][0]["active_per_token"]["mean"] = 0.5; },
       "layers[0].active_per_token.mean: is 0.5"},
      {[](json& j) { j["layers"][0]["active_per_token"]["histogram"][0][1] = 0; },
       "a bin with count 0 must be left out"},
      {[](json& j) { j["layers"][0]["active_per_token"]["histogram"][0][0] = 1000; },
       "histogram[0][0]: 1000 is out of range (at most 100)"},
      {[](json& j) {
         std::swap(j["layers"][0]["active_per_token"]["histogram"][0],
                   j["layers"][0]["active_per_token"]["histogram"][1]);
       },
       "values must be strictly increasing"},
      {[](json& j) { j["layers"][0]["tilings"][0]["n_tiles"] = 12; },
       "layers[0].tilings[0].n_tiles: is 12 but d_ff=100 and tile_n=8 give 13"},
      {[](json& j) { j["layers"][0]["tilings"][0]["tile_max"][12] = 9; },
       "layers[0].tilings[0].tile_max[12]: 9 is out of range (at most 8)"},
      {[](json& j) { j["layers"][0]["tilings"][0]["tile_max"][12] = 5; },
       "tile 12 holds only 4 neurons"},
      {[](json& j) { j["layers"][0]["tilings"][0]["tile_p50"][0] = 8; },
       "tilings[0].tile_p90[0]: is below tile_p50[0]"},
      {[](json& j) { j["layers"][0]["tilings"][0]["tile_p999"].erase(0); },
       "tilings[0].tile_p999: has 12 entries, expected 13"},
      {[](json& j) {
         j["layers"][0]["tilings"][1]["tile_n"] = 8;
         j["layers"][0]["tilings"][1] = j["layers"][0]["tilings"][0];
       },
       "tile_n 8 appears twice"},
      {[](json& j) { j["layers"][0]["neuron_active_count"][0] = 1000; },
       "neuron_active_count[0]: 1000 is out of range (at most 300)"},
      {[](json& j) {
         j["layers"][0]["neuron_active_count"][0] =
             j["layers"][0]["neuron_active_count"][0].get<int>() + 1;
       },
       "neuron_active_count: sums to"},
      {[](json& j) { j["layers"][0]["dead_neurons"] = {3}; },
       "dead_neurons: must list exactly the neurons whose neuron_active_count is 0"},
      {[](json& j) { j["layers"][0]["dead_fraction"] = 0.5; },
       "layers[0].dead_fraction: is 0.5 but dead_neurons gives 0.1"},
      {[](json& j) { j["layers"].push_back(j["layers"][0]); },
       "layers[1].index: layer indices must be strictly increasing"},
  };
  for (const auto& c : cases) {
    json j = good;
    c.mutate(j);
    const std::string e = err(j);
    INFO(c.want);
    CHECK(e.rfind("p.json: ", 0) == 0);
    CHECK_THAT(e, Catch::Contains(c.want));
  }
  CHECK_THAT(profile::parse("{not json", "p.json").error().message,
             Catch::Contains("p.json: not valid JSON"));
  CHECK_THAT(profile::parse("[]", "p.json").error().message,
             Catch::Contains("a profile is a JSON object"));
}
