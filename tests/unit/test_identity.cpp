// The identity contract (docs/identity.md): layer ids, the plan's per-layer entries
// and servable buckets, and the runtime's lookup order (layer id, shape, default).
#include <catch2/catch.hpp>

#include "runtime/buckets.hpp"
#include "runtime/identity.hpp"
#include "tuner/plan.hpp"
#include "tuner/search.hpp"

using namespace ffnjit;

namespace {

const std::string kFp = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

model::ModelInfo two_layers() {
  model::ModelInfo info;
  info.fingerprint = kFp;
  for (int i = 0; i < 2; ++i) {
    model::FfnLayer L;
    L.index = i, L.d_model = 512, L.d_ff = 1536, L.gated = true;
    info.layers.push_back(L);
  }
  return info;
}

}  // namespace

TEST_CASE("layer ids: format and strict parse round trip") {
  CHECK(format_layer_id({kFp, 7, 1, 0}) == kFp + ":7");
  CHECK(format_layer_id({kFp, 7, 4, 3}) == kFp + ":7:tp4.3");
  for (const std::string& s : {kFp + ":0", kFp + ":27", kFp + ":3:tp2.1", kFp + ":1048576"}) {
    auto id = parse_layer_id(s);
    INFO(s);
    REQUIRE(id);
    CHECK(format_layer_id(*id) == s);
  }
  struct Bad {
    std::string text, says;
  };
  for (const Bad& b : std::vector<Bad>{{"", "fingerprint"},
                                       {"abc:0", "fingerprint"},
                                       {kFp.substr(0, 63) + "A:0", "fingerprint"},
                                       {kFp + ":", "decimal"},
                                       {kFp + ":01", "leading zeros"},
                                       {kFp + ":-1", "decimal"},
                                       {kFp + ":3x", "trailing"},
                                       {kFp + ":3:tp1.0", "size"},
                                       {kFp + ":3:tp2.2", "rank"},
                                       {kFp + ":3:tp2.1x", "rank"},
                                       {kFp + ":3:tp65.0", "size"},
                                       {kFp + ":1048577", "decimal"},
                                       {kFp + ":0" + std::string(300, '0'), "bytes"}}) {
    INFO(b.text);
    auto id = parse_layer_id(b.text);
    REQUIRE_FALSE(id);
    CHECK(id.error().message.find(b.says) != std::string::npos);
  }
}

TEST_CASE("tune buckets must be made of whole runtime buckets") {
  CHECK(check_servable(default_buckets()));
  CHECK(check_servable(*parse_buckets("1-4,5-64,65-4096,4097+")));
  auto split = check_servable(*parse_buckets("1,2-3,4-16"));
  REQUIRE_FALSE(split);
  CHECK(split.message().find("bucket 2-3 splits") != std::string::npos);
  CHECK(split.message().find(format_buckets(default_buckets())) != std::string::npos);
  CHECK(format_buckets(*parse_buckets(format_buckets(default_buckets()))) == format_buckets(default_buckets()));
}

TEST_CASE("the plan tunes every layer under its own id; shards under theirs") {
  const auto info = two_layers();
  auto plan = make_plan(info, default_buckets());
  REQUIRE(plan);
  REQUIRE(plan->entries.size() == 2 * default_buckets().size());
  CHECK(plan->entries.front().signature == kFp + ":0");
  CHECK(plan->entries.back().signature == kFp + ":1");
  CHECK(plan->entries.back().layer_index == 1);
  auto tp = make_plan(info, *parse_buckets("1"), nullptr, 2);
  REQUIRE(tp);
  REQUIRE(tp->entries.size() == 4);
  CHECK(tp->entries[1].signature == kFp + ":0:tp2.1");
  CHECK(tp->entries[1].layer.d_ff == 768);
  CHECK(tp->entries[1].label() == "layer 0 tp2.1");
  auto odd = make_plan(info, *parse_buckets("1"), nullptr, 5);
  REQUIRE_FALSE(odd);
  CHECK(odd.error().message.find("does not split into 5") != std::string::npos);
  auto misaligned = make_plan(info, *parse_buckets("1-2"));
  REQUIRE_FALSE(misaligned);
}

TEST_CASE("a profile must describe the checkpoint it tunes") {
  auto info = two_layers();
  profile::Profile p;
  p.fingerprint = kFp;
  profile::LayerProfile lp;
  lp.index = 0, lp.d_model = 512, lp.d_ff = 2048, lp.gated = true;  // another d_ff than the checkpoint's
  p.layers.push_back(lp);
  auto plan = make_plan(info, default_buckets(), &p);
  REQUIRE_FALSE(plan);
  CHECK(plan.error().message.find("profile") != std::string::npos);
}

TEST_CASE("the search space keeps the untuned default format next to a profile's") {
  const BatchBucket b{1, 1};
  auto f = format_candidates({128, 12}, b, true);
  REQUIRE(f.size() == 2);
  CHECK(f[0].capacity == 12);
  CHECK(f[1].tile_n == 128);
  CHECK(f[1].capacity == 31);
  CHECK(format_candidates({128, 31}, b, true).size() == 1);
}

TEST_CASE("the search times full forwards of the best gates and of the default config") {
  // Gate-alone times favour gate 1, but its full forward is slow: the search must
  // still return the faster forward (the default's), which a gate-only pick would miss.
  const LayerShape shape{2048, 5632, true};
  const BatchBucket b{1, 1};
  const auto def = default_sparse_config(shape, Arch::kSm90a, b);
  const auto gates = gate_candidates(shape, Arch::kSm90a, b, {128, 31});
  REQUIRE(gates.size() > 3);
  int forwards = 0;
  auto r = search_sparse(shape, Arch::kSm90a, b, {{128, 31}},
                         [&](const SparseFfnConfig& c, SearchStage stage) -> Expected<Timing> {
                           Timing t;
                           const bool is_default_gate = c.gate.canonical() == def.gate.canonical();
                           if (stage == SearchStage::kGate) t.median_us = is_default_gate ? 9 : c.gate.canonical() == gates[1].canonical() ? 5 : 20;
                           else if (stage == SearchStage::kUpDown) t.median_us = 4;
                           else ++forwards, t.median_us = is_default_gate ? 10 : 30;
                           return t;
                         });
  REQUIRE(!r.forwards.empty());
  CHECK(r.forwards[0].first.gate.canonical() == def.gate.canonical());
  CHECK(r.forwards[0].second == 10);
  CHECK(forwards >= 2);
}

TEST_CASE("every token count a forward accepts has a runtime bucket") {
  const auto& b = default_buckets();
  CHECK(bucket_index(b, 1) == 0);
  CHECK(bucket_index(b, 4097) == int(b.size()) - 1);
  // 2^30 < tokens <= INT_MAX: the open bucket (70603ab returned -1 and forward indexed with it).
  CHECK(bucket_index(b, (1LL << 30) + 1) == int(b.size()) - 1);
  CHECK(bucket_index(b, 2147483647LL) == int(b.size()) - 1);
  CHECK(bucket_index(b, 0) == -1);
}
