// The tuner's choice for a layer and bucket, to and from its JSON form.
#include "runtime/choice.hpp"

namespace ffnjit {

std::string Choice::label() const {
  if (strategy == Strategy::kDense) return "dense (cuBLASLt)";
  const auto& g = sparse.gate.tile;
  const auto& u = sparse.up_down.tile;
  std::string s = "sparse tn" + std::to_string(sparse.gate.sparsity.tile_n) + "c" +
                  std::to_string(sparse.gate.sparsity.capacity) + " ";
  s += sparse.gemm_gate() ? "gemm+pack" : "m" + std::to_string(g.bm) + "k" + std::to_string(g.bk) + "w" +
                                              std::to_string(g.warps_m) + "x" + std::to_string(g.warps_n) + "s" +
                                              std::to_string(g.stages) + "b" + std::to_string(g.min_blocks);
  if (!sparse.gemm_gate() && sparse.gate.cluster_size() > 1)
    s += "c" + std::to_string(sparse.gate.cluster_size());
  s += std::string(sparse.split_up_down() ? " down t" : " t") + std::to_string(u.threads) + "p" +
       std::to_string(u.splits) + "b" + std::to_string(u.min_blocks);
  if (sparse.heavy_split()) s += " h" + std::to_string(sparse.heavy_splits);
  if (sparse.heavy_groups() > 1) s += " g" + std::to_string(sparse.heavy_groups());
  if (sparse.switch_active > 0 && sparse.gemm_gate()) s += " sw" + std::to_string(sparse.switch_active);
  return s;
}

std::string shape_signature(const LayerShape& l) {
  std::string s = "ffn:" + std::to_string(l.d_model) + "x" + std::to_string(l.d_ff) +
                  (l.gated ? ":gated" : ":nongated") + ":bf16";
  // The math beyond a bias-free ReLU FFN, so no record serves a layer that computes otherwise.
  if (l.activation != Activation::kRelu) s += std::string(":") + activation_name(l.activation);
  if (l.gate_bias || l.up_bias || l.down_bias)
    s += std::string(":bias") + (l.gate_bias ? "g" : "") + (l.up_bias ? "u" : "") + (l.down_bias ? "d" : "");
  return s;
}

nlohmann::json choice_to_json(const Choice& c) {
  if (c.strategy == Choice::Strategy::kDense) return {{"strategy", "dense"}, {"kernels", nlohmann::json::array()}};
  const auto& g = c.sparse.gate.tile;
  const auto& up = c.sparse.up.tile;
  const auto& u = c.sparse.up_down.tile;
  nlohmann::json kernels = nlohmann::json::array();
  for (const auto& s : c.sparse.kernel_specs()) kernels.push_back(s.kernel_name());
  return {{"strategy", "sparse"},
          {"tile_n", c.sparse.gate.sparsity.tile_n},
          {"capacity", c.sparse.gate.sparsity.capacity},
          {"gate",
           {{"family", family_name(c.sparse.gate.family)},
            {"bm", g.bm},
            {"bk", g.bk},
            {"warps_m", g.warps_m},
            {"warps_n", g.warps_n},
            {"stages", g.stages},
            {"threads", g.threads},
            {"splits", g.splits},
            {"min_blocks", g.min_blocks}}},
          {"up", {{"threads", up.threads}, {"splits", up.splits}, {"min_blocks", up.min_blocks}}},
          {"up_down",
           {{"family", family_name(c.sparse.up_down.family)},
            {"threads", u.threads},
            {"splits", u.splits},
            {"min_blocks", u.min_blocks}}},
          {"launch",
           {{"heavy_splits", c.sparse.heavy_splits},
            {"heavy_threshold", c.sparse.heavy_threshold},
            {"switch_active", c.sparse.switch_active}}},
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
    // A spec from the record: family (absent in records before 0.2: the fused kernels)
    // and tile fields over that family's defaults.
    auto spec = [&](const nlohmann::json& js, Family fallback) -> Expected<KernelSpec> {
      auto f = parse_family(js.value("family", std::string(family_name(fallback))));
      FFNJIT_TRY(f);
      KernelSpec s = default_spec(*f, layer, arch, bucket, sp);
      auto& t = s.tile;
      t.bm = js.value("bm", t.bm), t.bk = js.value("bk", t.bk), t.warps_m = js.value("warps_m", t.warps_m);
      t.warps_n = js.value("warps_n", t.warps_n), t.stages = js.value("stages", t.stages);
      t.threads = js.value("threads", t.threads), t.splits = js.value("splits", t.splits);
      t.min_blocks = js.value("min_blocks", t.min_blocks);
      return s;
    };
    auto gate = spec(j.at("gate"), Family::kGatePack);
    FFNJIT_TRY(gate);
    auto up_down = spec(j.at("up_down"), Family::kUpDown);
    FFNJIT_TRY(up_down);
    c.sparse.gate = *gate, c.sparse.up_down = *up_down;
    if (j.contains("up")) {
      auto up = spec(j.at("up"), Family::kUp);
      FFNJIT_TRY(up);
      c.sparse.up = *up;
    }
    // Launch parameters: the defaults for these kernels (records before 0.3 have none).
    set_default_launch(c.sparse);
    if (j.contains("launch")) {
      const auto& l = j.at("launch");
      c.sparse.heavy_splits = l.value("heavy_splits", c.sparse.heavy_splits);
      c.sparse.heavy_threshold = l.value("heavy_threshold", c.sparse.heavy_threshold);
      c.sparse.switch_active = l.value("switch_active", c.sparse.switch_active);
    }
    FFNJIT_TRY(c.sparse.validate());
    // The record names the kernels it timed: serve exactly those (a field the record
    // lacks, as gate_pack's cluster split before 0.3.1, would otherwise fall back to its
    // default and serve an untimed kernel).
    if (j.contains("kernels")) {
      std::vector<std::string> named = j.at("kernels").get<std::vector<std::string>>(), rebuilt;
      for (const auto& s : c.sparse.kernel_specs()) rebuilt.push_back(s.kernel_name());
      if (named != rebuilt)
        return user_error("tuning record names kernels that its fields do not rebuild (" +
                          (named.empty() ? std::string("none") : named.front()) + " vs " +
                          rebuilt.front() +
                          "); it was written by an earlier ffnjit: run `ffnjit tune` again");
    }
    return c;
  } catch (const nlohmann::json::exception& e) {
    return user_error(std::string("tuning record's winner is malformed (") + e.what() +
                      "); run `ffnjit cache gc` and `ffnjit tune` again");
  }
}

}  // namespace ffnjit
