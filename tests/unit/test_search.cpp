// The tuner's search space: valid candidates only, the runtime default first, and the
// families and variants each bucket range offers (tuner/search.cpp). No GPU needed.
#include <catch2/catch.hpp>

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
