// The flags that describe a layer and a kernel configuration, shared by CLI commands.
#include "cli/spec_args.hpp"

#include "support/strings.hpp"
#include <climits>

namespace ffnjit::cli {

void add_spec_options(Args& args) {
  args.option("d-model", "N", "hidden size (multiple of 8)")
      .option("d-ff", "N", "FFN intermediate size (multiple of 8)")
      .flag("gated", "gated FFN: (relu(x Wg^T) * x Wu^T) Wd^T (the default)")
      .flag("non-gated", "non-gated FFN: relu(x Wu^T) Wd^T")
      .option(
          "activation", "A",
          "relu, relu2 (squared ReLU) or fatrelu (thresholded; the threshold is a launch value)",
          std::string("relu"))
      .option("bias", "LIST", "the layer's biases, comma-separated: gate (gated only), up, down")
      .option("tokens", "M", "token count the kernel is specialized for", std::string("2048"))
      .option("arch", "ARCH", "target: sm_80, sm_89 or sm_90a", std::string("sm_90a"))
      .option("family", "F",
              "kernel family: gate_pack, gate_gemv, pack, up_down, up, down, transpose, dense_act "
              "or stats",
              std::string("gate_pack"))
      .option("tile-n", "N", "TwELL tile width (32, 64, 128, 256)", std::string("128"))
      .option("capacity", "N", "TwELL entries per (token, tile)", std::string("31"))
      .option("bm", "N", "gate_pack: CTA tile rows (tokens); gate_gemv: tokens per CTA (8-32)")
      .option("bk", "N", "gate_pack: CTA tile depth (32 or 64)")
      .option("warps-m", "N", "gate_pack: warps along tokens")
      .option("warps-n", "N", "gate_pack: warps along neurons")
      .option("stages", "N",
              "gate_pack: cp.async pipeline stages; gate_gemv: loads in flight per warp")
      .option("threads", "N", "gate_gemv, pack, up_down, up, down: threads per CTA")
      .option("splits", "N",
              "up_down, up: CTAs per token (tiles split); down: output column splits; gate_pack: "
              "CTAs per tile (a cluster splitting d_model, sm_90a)")
      .option("min-blocks", "N", "CTAs per SM promised to ptxas (caps registers)");
}

Expected<KernelSpec> spec_from_args(const Args& args) {
  if (!args.has("d-model") || !args.has("d-ff"))
    return user_error("--d-model and --d-ff are required; e.g. --d-model 2048 --d-ff 5632");
  if (args.has("gated") && args.has("non-gated"))
    return user_error("pass either --gated or --non-gated, not both");
  auto d_model = args.get_int("d-model", 1, 1 << 20);
  FFNJIT_TRY(d_model);
  auto d_ff = args.get_int("d-ff", 1, 1 << 24);
  FFNJIT_TRY(d_ff);
  auto tokens = args.get_int("tokens", 1, INT_MAX);
  FFNJIT_TRY(tokens);
  auto arch = parse_arch(args.get("arch"));
  FFNJIT_TRY(arch);
  auto family = parse_family(args.get("family"));
  FFNJIT_TRY(family);
  auto tile_n = args.get_int("tile-n", 1, 1 << 16);
  FFNJIT_TRY(tile_n);
  auto cap = args.get_int("capacity", 1, 1 << 16);
  FFNJIT_TRY(cap);

  LayerShape layer{int(*d_model), int(*d_ff), !args.has("non-gated"), DType::kBF16};
  auto act = parse_activation(args.get("activation"));
  FFNJIT_TRY(act);
  layer.activation = *act;
  if (args.has("bias"))
    for (const std::string& b : split(args.get("bias"), ',')) {
      if (b == "gate")
        layer.gate_bias = true;
      else if (b == "up")
        layer.up_bias = true;
      else if (b == "down")
        layer.down_bias = true;
      else
        return user_error("--bias " + args.get("bias") + ": '" + b + "' is not gate, up or down");
    }
  BatchBucket bucket{int(*tokens), int(*tokens)};
  KernelSpec spec = default_spec(*family, layer, *arch, bucket, Sparsity{int(*tile_n), int(*cap)});
  struct Override {
    const char* flag;
    int* field;
  } overrides[] = {{"bm", &spec.tile.bm},           {"bk", &spec.tile.bk},
                   {"warps-m", &spec.tile.warps_m}, {"warps-n", &spec.tile.warps_n},
                   {"stages", &spec.tile.stages},   {"threads", &spec.tile.threads},
                   {"splits", &spec.tile.splits},   {"min-blocks", &spec.tile.min_blocks}};
  for (auto& o : overrides) {
    if (!args.has(o.flag)) continue;
    auto v = args.get_int(o.flag, 1, 1 << 16);
    FFNJIT_TRY(v);
    *o.field = int(*v);
  }
  FFNJIT_TRY(spec.validate());
  return spec;
}

}  // namespace ffnjit::cli
