// Stage 1 of the pipeline: KernelSpec -> Source (rendered CUDA translation unit).
#include "codegen/source.hpp"

#include <vector>

#include "codegen/render.hpp"
#include "codegen/version.hpp"
#include "support/hash.hpp"

namespace ffnjit {
namespace {

std::string_view find_template(const std::string& path) {
  for (const auto& f : embedded_templates())
    if (f.path == path) return f.text;
  return {};
}

// The device enumerator of an activation (common.cuh ActKind).
std::string act_kind(Activation a) {
  switch (a) {
    case Activation::kRelu:
      return "kActRelu";
    case Activation::kRelu2:
      return "kActRelu2";
    case Activation::kFatRelu:
      return "kActFatRelu";
  }
  return "?";
}

TemplateValues values_for(const KernelSpec& s) {
  auto i = [](int v) { return std::to_string(v); };
  auto b = [](bool v) { return std::string(v ? "true" : "false"); };
  TemplateValues v = {{"KERNEL_NAME", s.kernel_name()}, {"THREADS", i(s.block_threads())}, {"MIN_BLOCKS", i(s.tile.min_blocks)}, {"D_MODEL", i(s.layer.d_model)}};
  switch (s.family) {
    case Family::kGatePack:
      v.insert(
          {{"D_FF", i(s.layer.d_ff)},
           {"TILE_N", i(s.sparsity.tile_n)},
           {"CAPACITY", i(s.sparsity.capacity)},
           {"BM", i(s.tile.bm)},
           {"BK", i(s.tile.bk)},
           {"WARPS_M", i(s.tile.warps_m)},
           {"WARPS_N", i(s.tile.warps_n)},
           {"STAGES", i(s.tile.stages)},
           {"SPLITS", i(s.tile.splits)},
           {"CLUSTER",
            s.cluster_size() > 1 ? "__cluster_dims__(" + i(s.cluster_size()) + ", 1, 1) " : ""},
           {"ACT", act_kind(s.activation())},
           {"BIAS", b(s.gate_bias())}});
      break;
    case Family::kGateGemv:
      v.insert({{"D_FF", i(s.layer.d_ff)},
                {"TILE_N", i(s.sparsity.tile_n)},
                {"CAPACITY", i(s.sparsity.capacity)},
                {"BM", i(s.tile.bm)},
                {"UNROLL", i(s.tile.stages)},
                {"ACT", act_kind(s.activation())},
                {"BIAS", b(s.gate_bias())}});
      break;
    case Family::kUpDown:
    case Family::kUp:
    case Family::kDown:
      v.insert(
          {{"D_FF", i(s.layer.d_ff)},
           {"TILE_N", i(s.sparsity.tile_n)},
           {"CAPACITY", i(s.sparsity.capacity)},
           {"GATED", s.layer.gated ? "true" : "false"},
           {"SPLITS", i(s.tile.splits)},
           {"CLUSTER", s.cluster_size() > 1 ? "true" : "false"},
           {"CLUSTER_DIMS",
            s.cluster_size() > 1 ? "__cluster_dims__(1, " + i(s.cluster_size()) + ", 1) " : ""},
           {"MODE", s.family == Family::kUp     ? "kModeUp"
                    : s.family == Family::kDown ? "kModeDown"
                                                : "kModeFused"},
           {"ACT", act_kind(s.activation())},
           {"GATE_BIAS", b(s.gate_bias())},
           {"UP_BIAS", b(s.up_bias())},
           {"DOWN_BIAS", b(s.down_bias())}});
      break;
    case Family::kPack:
      v.erase("D_MODEL");
      v.insert({{"D_FF", i(s.layer.d_ff)},
                {"TILE_N", i(s.sparsity.tile_n)},
                {"CAPACITY", i(s.sparsity.capacity)},
                {"ACT", act_kind(s.activation())}});
      break;
    case Family::kTranspose:
      v.erase("D_MODEL");
      break;
    case Family::kDenseAct:
      v.erase("D_MODEL");
      v.insert({{"D_FF", i(s.layer.d_ff)},
                {"GATED", b(s.layer.gated)},
                {"ACT", act_kind(s.activation())}});
      break;
    case Family::kStats:
      v.erase("D_MODEL");
      v.insert({{"D_FF", i(s.layer.d_ff)}, {"TILE_N", i(s.sparsity.tile_n)}, {"CAPACITY", i(s.sparsity.capacity)}});
      break;
  }
  return v;
}

}  // namespace

const std::string& templates_hash() {
  static const std::string hash = [] {
    Sha256 h;
    for (const auto& f : embedded_templates()) {
      h.update(f.path).update("\0", 1).update(f.text).update("\0", 1);
    }
    return h.hex_digest().substr(0, 16);
  }();
  return hash;
}

std::span<const EmbeddedFile> device_headers() {
  static const std::vector<EmbeddedFile> headers = [] {
    std::vector<EmbeddedFile> h;
    for (const auto& f : embedded_templates())
      if (f.path.ends_with(".cuh") || f.path.ends_with(".h")) h.push_back(f);
    return h;
  }();
  return headers;
}

Expected<Source> generate_source(const KernelSpec& spec) {
  FFNJIT_TRY(spec.validate());
  // up and down are modes of the up_down template.
  const bool up_down_mode = spec.family == Family::kUp || spec.family == Family::kDown;
  const std::string tpl_path =
      std::string("instances/") + (up_down_mode ? "up_down" : family_name(spec.family)) + ".cu.in";
  std::string_view tpl = find_template(tpl_path);
  if (tpl.empty()) return internal_error("no embedded template " + tpl_path + "; rebuild ffnjit");

  Source src;
  src.spec = spec;
  src.kernel_name = spec.kernel_name();
  src.spec_hash = short_hash(spec.canonical(), 16);
  src.template_hash = templates_hash();
  TemplateValues values = values_for(spec);
  values["BANNER"] = "// Generated by ffnjit " + std::string(kGeneratorVersion) +
                     " codegen. DO NOT EDIT: change templates/ and regenerate.\n"
                     "// kernel: " + src.kernel_name + "\n"
                     "// instance of: templates/" + tpl_path + "\n"
                     "// spec: " + spec.canonical() + "\n"
                     "// spec hash: " + src.spec_hash + "  template hash: " + src.template_hash;
  auto text = render_template(tpl, values, tpl_path);
  FFNJIT_TRY(text);
  src.text = std::move(*text);
  return src;
}

}  // namespace ffnjit
