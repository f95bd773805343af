// The tuner's search space: valid candidates only, the runtime default first, and the
// families and variants each bucket range offers (tuner/search.cpp). No GPU needed.
#include <catch2/catch.hpp>

#include "runtime/choice.hpp"
#include "tuner/search.hpp"

using namespace ffnjit;

namespace {

const LayerShape kLayer{2048, 5632, true};

int count(const std::vector<KernelSpec>& v, Family f, int min_splits = 1) {
  int n = 0;
  for (const KernelSpec& s : v) n += s.family == f && s.tile.splits >= min_splits;
  return n;
}

}  // namespace

TEST_CASE("gate candidates: valid, default first, the families each bucket offers") {
  for (Arch arch : {Arch::kSm80, Arch::kSm89, Arch::kSm90a})
    for (int tokens : {1, 16, 64, 128, 2048}) {
      const BatchBucket b{tokens, tokens};
      const auto gates = gate_candidates(kLayer, arch, b, {64, 15});
      INFO(arch_name(arch) << " tokens=" << tokens);
      REQUIRE(!gates.empty());
      CHECK(gates[0].canonical() == default_sparse_config(kLayer, arch, b, {64, 15}).gate.canonical());
      for (const KernelSpec& s : gates) CHECK(s.validate());
      CHECK((count(gates, Family::kGateGemv) > 0) == (tokens <= 64));
      CHECK((count(gates, Family::kPack) > 0) == (tokens > 16));
      // gate_pack split over a cluster: sm_90a, up to 64 tokens.
      CHECK((count(gates, Family::kGatePack, 2) > 0) == (arch == Arch::kSm90a && tokens <= 64));
    }
}

TEST_CASE("up/down candidates: valid, default first, decode splits") {
  const auto ups = up_down_candidates(kLayer, Arch::kSm90a, {1, 1}, {64, 15});
  REQUIRE(!ups.empty());
  CHECK(ups[0].canonical() == default_spec(Family::kUpDown, kLayer, Arch::kSm90a, {1, 1}, {64, 15}).canonical());
  bool cluster = false, tickets = false;
  for (const KernelSpec& s : ups) {
    CHECK(s.validate());
    cluster |= s.cluster_size() > 1;
    tickets |= s.family == Family::kUpDown && s.tile.splits > 8;
  }
  CHECK(cluster);  // splits that fit a cluster reduce in shared memory
  CHECK(tickets);  // more splits than a cluster holds use the global tickets
}

// A tuning record serves exactly the kernels the tuner timed: every pipeline of the
// search space survives choice_to_json -> choice_from_json with the same kernels and
// launch parameters (gate_pack's cluster split was once lost on the way).
TEST_CASE("every candidate pipeline round-trips through a tuning record") {
  for (Arch arch : {Arch::kSm80, Arch::kSm90a})
    for (int tokens : {1, 16, 64, 128, 2048}) {
      const BatchBucket b{tokens, tokens};
      for (const Sparsity& sp : format_candidates({128, 31}, b, false))
        for (const KernelSpec& gate : gate_candidates(kLayer, arch, b, sp))
          for (const KernelSpec& ud : up_down_candidates(kLayer, arch, b, sp)) {
            SparseFfnConfig cfg = make_pipeline(gate, ud);
            if (!cfg.validate()) continue;
            const Choice c{Choice::Strategy::kSparse, cfg};
            auto back = choice_from_json(choice_to_json(c), kLayer, arch, b);
            INFO(arch_name(arch) << " tokens=" << tokens << " " << cfg.describe());
            REQUIRE(back);
            std::vector<std::string> want, got;
            for (const auto& s : cfg.kernel_specs()) want.push_back(s.canonical());
            for (const auto& s : back->sparse.kernel_specs()) got.push_back(s.canonical());
            CHECK(got == want);
            CHECK(back->sparse.heavy_splits == cfg.heavy_splits);
            CHECK(back->sparse.heavy_threshold == cfg.heavy_threshold);
            CHECK(back->sparse.switch_active == cfg.switch_active);
          }
    }
  // A record whose fields no longer rebuild the kernels it names is refused, not served
  // as some other kernel.
  SparseFfnConfig cfg = default_sparse_config(kLayer, Arch::kSm90a, BatchBucket{1, 1});
  cfg.gate = gate_candidates(kLayer, Arch::kSm90a, {1, 1}, cfg.gate.sparsity).back();
  auto j = choice_to_json(Choice{Choice::Strategy::kSparse, cfg});
  j["kernels"][0] = "ffnjit_gate_pack_sm90a_not_this_one";
  auto refused = choice_from_json(j, kLayer, Arch::kSm90a, {1, 1});
  REQUIRE_FALSE(refused);
  CHECK_THAT(refused.error().message, Catch::Contains("run `ffnjit tune` again"));
}
