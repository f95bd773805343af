// The tuner's choice for a layer and bucket, to and from its JSON form.
#include "runtime/choice.hpp"

namespace ffnjit {

std::string Choice::label() const {
  if (strategy == Strategy::kDense) return "dense (cuBLASLt)";
  const auto& g = sparse.gate.tile;
  const auto& u = sparse.up_down.tile;
  return "sparse tn" + std::to_string(sparse.gate.sparsity.tile_n) + "c" + std::to_string(sparse.gate.sparsity.capacity) +
         " m" + std::to_string(g.bm) + "k" + std::to_string(g.bk) + "w" + std::to_string(g.warps_m) + "x" +
         std::to_string(g.warps_n) + "s" + std::to_string(g.stages) + "b" + std::to_string(g.min_blocks) + " t" +
         std::to_string(u.threads) + "p" + std::to_string(u.splits) + "b" + std::to_string(u.min_blocks);
}

std::string shape_signature(const LayerShape& l) {
  return "ffn:" + std::to_string(l.d_model) + "x" + std::to_string(l.d_ff) + (l.gated ? ":gated" : ":nongated") +
         ":bf16";
}

nlohmann::json choice_to_json(const Choice& c) {
  if (c.strategy == Choice::Strategy::kDense) return {{"strategy", "dense"}, {"kernels", nlohmann::json::array()}};
  const auto& g = c.sparse.gate.tile;
  const auto& u = c.sparse.up_down.tile;
  nlohmann::json kernels = {c.sparse.gate.kernel_name(), c.sparse.up_down.kernel_name()};
  if (u.splits > 1) kernels.push_back(c.sparse.reduce.kernel_name());
  return {{"strategy", "sparse"},
          {"tile_n", c.sparse.gate.sparsity.tile_n},
          {"capacity", c.sparse.gate.sparsity.capacity},
          {"gate",
           {{"bm", g.bm}, {"bk", g.bk}, {"warps_m", g.warps_m}, {"warps_n", g.warps_n}, {"stages", g.stages},
            {"min_blocks", g.min_blocks}}},
          {"up_down", {{"threads", u.threads}, {"splits", u.splits}, {"min_blocks", u.min_blocks}}},
          {"kernels", kernels}};
}

Expected<Choice> choice_from_json(const nlohmann::json& j, const LayerShape& layer, Arch arch,
                                  const BatchBucket& bucket) {
  try {
    Choice c;
    const std::string strategy = j.at("strategy").get<std::string>();
    if (strategy == "dense") {
      c.strategy = Choice::Strategy::kDense;
      return c;
    }
    if (strategy != "sparse")
      return user_error("tuning record has unknown strategy '" + strategy + "'; run `ffnjit tune` again");
    Sparsity sp{j.at("tile_n").get<int>(), j.at("capacity").get<int>()};
    c.sparse = default_sparse_config(layer, arch, bucket, sp);
    auto& g = c.sparse.gate.tile;
    const auto& jg = j.at("gate");
    g.bm = jg.at("bm"), g.bk = jg.at("bk"), g.warps_m = jg.at("warps_m"), g.warps_n = jg.at("warps_n");
    g.stages = jg.at("stages"), g.min_blocks = jg.at("min_blocks");
    auto& u = c.sparse.up_down.tile;
    const auto& ju = j.at("up_down");
    u.threads = ju.at("threads"), u.splits = ju.at("splits"), u.min_blocks = ju.at("min_blocks");
    c.sparse.reduce.tile.threads = u.threads;
    c.sparse.reduce.tile.splits = u.splits;
    FFNJIT_TRY(c.sparse.validate());
    return c;
  } catch (const nlohmann::json::exception& e) {
    return user_error(std::string("tuning record's winner is malformed (") + e.what() +
                      "); run `ffnjit cache gc` and `ffnjit tune` again");
  }
}

}  // namespace ffnjit
