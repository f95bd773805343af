// `ffnjit profile`: measures a checkpoint's sparsity from captured FFN inputs, writes a profile,
// reports specializations.
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "model/checkpoint.hpp"
#include "model/profiler.hpp"
#include "model/screen.hpp"
#include "model/specialize.hpp"
#include "support/strings.hpp"
#include "tuner/gpu_gate.hpp"

namespace ffnjit::cli {
namespace {

Expected<std::vector<int>> parse_widths(const std::string& s) {
  std::vector<int> out;
  for (const std::string& part : split(s, ',')) {
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(part.c_str(), &end, 10);
    if (part.empty() || *end || errno || v < 1 || v > 65536)
      return user_error("--tile-n takes comma-separated tile widths such as 64,128,256; got '" + s +
                        "'");
    out.push_back(int(v));
  }
  return out;
}

// --screen: the certified int8 screen's candidates per token, layer by layer (CPU).
int print_screen(const model::Checkpoint& ck, const std::vector<model::LayerInputs>& inputs,
                 int64_t max_tokens) {
  std::printf(
      "\ncertified int8 gate screen (host reference; candidates keep their exact bf16 gate)\n");
  std::printf("%5s %6s %6s %8s %7s | %-34s | %s\n", "layer", "d_ff", "exact", "MB", "tokens",
              "per token: active  candidates  p99  max", "of d_ff");
  for (const auto& in : inputs) {
    auto w = ck.load_layer(in.layer);
    if (!w) return report_error("profile", w.error().message);
    auto r = screen::measure_layer(w->view(), in.x.data(), in.tokens, max_tokens);
    if (!r) return report_error("profile", r.error().message);
    std::printf("%5d %6d %6d %8.1f %7lld | %14.1f %11.1f %4d %4d | %6.2f%%\n", in.layer, w->d_ff,
                r->exact_columns, double(r->bytes) / 1e6, (long long)r->tokens, r->active_mean,
                r->candidates_mean, r->candidates_p99, r->candidates_max,
                100.0 * r->candidates_mean / w->d_ff);
    if (r->ruled_out_active)
      return report_error("profile", "the int8 screen ruled out " +
                                         std::to_string(r->ruled_out_active) +
                                         " active neurons of layer " + std::to_string(in.layer) +
                                         "; this is a bug in ffnjit, please report it");
  }
  return 0;
}

void print_specializations(const model::Checkpoint& ck, const model::ProfileRun& run, int tile_n,
                           bool prune) {
  std::printf(
      "\nspecializations at tile_n %d (capacity rule: p99.9 of active per (token, tile), rounded "
      "up to a "
      "multiple of 4, in [1, tile_n]):\n",
      tile_n);
  std::printf("%5s %8s %9s | %-31s %-10s %-12s | %s\n", "layer", "capacity", "overflow",
              "permutation: max before->after", "p99", "p99.9", "fitted tokens: max (bound)");
  for (const auto& l : run.profile.layers) {
    auto cap = model::choose_capacity(l, tile_n);
    const auto held = run.held_out.find(l.index);
    const bool has_held = held != run.held_out.end() && held->second.tokens() > 0;
    auto perm =
        model::find_permutation(run.fit.at(l.index), tile_n, has_held ? &held->second : nullptr);
    if (!cap || !perm) {
      std::printf("%5d  %s\n", l.index,
                  (!cap ? cap.error().message : perm.error().message).c_str());
      continue;
    }
    char a[64], b[64], c[64], d[64];
    std::snprintf(a, sizeof a, "%u -> %u (bound %u)%s", perm->eval_before.max, perm->eval_after.max,
                  perm->eval_before.bound, perm->improves ? "" : ", not adopted");
    std::snprintf(b, sizeof b, "%u -> %u", perm->eval_before.p99, perm->eval_after.p99);
    std::snprintf(c, sizeof c, "%u -> %u", perm->eval_before.p999, perm->eval_after.p999);
    std::snprintf(d, sizeof d, "%u -> %u (%u)", perm->fit_before.max, perm->fit_after.max,
                  perm->fit_before.bound);
    std::printf("%5d %8d %8.3f%% | %-31s %-10s %-12s | %s\n", l.index, cap->capacity,
                100 * cap->overflow_fraction, a, b, c, d);
  }
  const bool any_held = !run.held_out_x.empty();
  std::printf("(permutation numbers on %s)\n",
              any_held ? "the held-out tokens"
                       : "the profiled tokens; pass --held-out 0.2 to evaluate on unseen ones");
  std::printf("\ndead neurons (never active on the profiled tokens):\n");
  for (const auto& l : run.profile.layers) {
    const auto d = model::dead_neurons(l);
    std::printf("  layer %d: %zu of %d (%.1f%%) over %llu tokens\n", d.layer, d.dead.size(), d.d_ff,
                100 * d.fraction, (unsigned long long)d.tokens);
  }
  if (!prune) return;
  std::printf("\npruning dead neurons (fp64 reference on held-out tokens):\n");
  for (const auto& l : run.profile.layers) {
    auto x = run.held_out_x.find(l.index);
    if (x == run.held_out_x.end()) continue;
    auto w = ck.load_layer(l.index);
    if (!w) {
      std::printf("  layer %d: %s\n", l.index, w.error().message.c_str());
      continue;
    }
    auto p = model::prune_dead(*w, l, x->second.x.data(), x->second.tokens);
    if (!p) {
      std::printf("  layer %d: %s\n", l.index, p.error().message.c_str());
      continue;
    }
    std::printf(
        "  layer %d: removes %d neurons (d_ff %d -> %d): relative error %.3e (worst token %.3e) on "
        "%lld "
        "held-out tokens; removed neurons fired %llu times there\n",
        l.index, p->removed, w->d_ff, p->weights.d_ff, p->rel_error, p->max_token_rel_error,
        (long long)p->held_out_tokens, (unsigned long long)p->pruned_activations);
  }
}

}  // namespace

int cmd_profile(const Argv& argv) {
  const char* cmd = "profile";
  Args args(
      cmd,
      "Measures the sparsity of each FFN layer of a checkpoint on captured FFN inputs and writes "
      "a\n"
      "sparsity profile (docs/profile.md): active neurons per token and per (token, tile), "
      "per-tile\n"
      "quantiles, per-neuron firing counts, dead neurons. The gate is computed on the GPU with\n"
      "ffnjit's own gate kernel when there is one, else on the CPU (fp64 reference, all cores);\n"
      "--cpu forces the CPU. --specialize also reports the per-layer capacity, the neuron "
      "permutation\n"
      "that lowers the per-tile peak (before/after), dead neurons and, with --prune-dead, the "
      "measured\n"
      "error of pruning them.\n"
      "example: ffnjit profile demo --inputs demo/inputs.safetensors -o demo/profile.json "
      "--specialize");
  args.positional("checkpoint", "checkpoint directory (config.json + safetensors)");
  args.option("inputs", "FILE",
              "safetensors file with layers.N.input [tokens, d_model] tensors (required)");
  args.option("output", "FILE", "write the profile here");
  args.alias("-o", "output");
  args.option("tile-n", "LIST", "tile widths to record, comma-separated",
              std::string("32,64,128,256"));
  args.option("threads", "N", "CPU threads for the CPU gate (0: all cores)", std::string("0"));
  args.flag("cpu", "compute the gate on the CPU (fp64) even when a GPU is present");
  args.option("device", "N", "GPU ordinal for the gate", std::string("0"));
  args.option("held-out", "FRACTION",
              "hold out the last fraction of each layer's tokens to evaluate on", std::string("0"));
  args.flag("specialize", "report capacity, permutation and dead neurons per layer");
  args.option("spec-tile-n", "N", "tile width for --specialize", std::string("128"));
  args.flag("prune-dead",
            "with --specialize: measure the error of pruning dead neurons (needs --held-out)");
  args.flag("screen",
            "report the neurons per token that the certified int8 gate screen leaves as candidates "
            "(host reference, docs/kernels.md)");
  args.option("screen-tokens", "N", "tokens per layer for --screen, evenly spaced",
              std::string("128"));
  if (auto s = args.parse(argv); !s) return report_error(cmd, s.message(), 2);
  if (args.help_requested()) return std::printf("%s", args.help().c_str()), 0;
  if (!args.has("inputs"))
    return report_error(
        cmd,
        "--inputs is required: a safetensors file with layers.N.input [tokens, d_model]; "
        "`ffnjit demo-checkpoint` writes one",
        2);
  auto widths = parse_widths(args.get("tile-n"));
  if (!widths) return report_error(cmd, widths.error().message, 2);
  auto threads = args.get_int("threads", 0, 4096);
  if (!threads) return report_error(cmd, threads.error().message, 2);
  auto device = args.get_int("device", 0, 64);
  if (!device) return report_error(cmd, device.error().message, 2);
  auto spec_tile = args.get_int("spec-tile-n", 1, 65536);
  if (!spec_tile) return report_error(cmd, spec_tile.error().message, 2);
  const std::string held_s = args.get("held-out");
  char* end = nullptr;
  const double held = std::strtod(held_s.c_str(), &end);
  if (held_s.empty() || *end || !(held >= 0 && held < 1))
    return report_error(cmd, "--held-out must be a fraction in [0, 1), got '" + held_s + "'", 2);
  if (args.has("prune-dead") && (!args.has("specialize") || held <= 0))
    return report_error(
        cmd, "--prune-dead measures its error on held-out tokens; pass --specialize --held-out 0.2",
        2);
  bool spec_width_recorded = false;
  for (int w : *widths) spec_width_recorded |= w == int(*spec_tile);
  if (args.has("specialize") && !spec_width_recorded)
    return report_error(cmd,
                        "--spec-tile-n " + std::to_string(*spec_tile) + " is not among --tile-n " +
                            args.get("tile-n") + "; add it",
                        2);

  auto screen_tokens = args.get_int("screen-tokens", 1, 1 << 20);
  if (!screen_tokens) return report_error(cmd, screen_tokens.error().message, 2);
  auto ck = model::Checkpoint::open(args.get("checkpoint"));
  if (!ck) return report_error(cmd, ck.error().message);
  const model::ModelInfo& info = ck->info();
  auto store = st::Store::open(args.get("inputs"));
  if (!store) return report_error(cmd, store.error().message);
  auto inputs = model::load_layer_inputs(*store, info);
  if (!inputs) return report_error(cmd, args.get("inputs") + ": " + inputs.error().message);

  model::ProfileOptions po;
  po.tile_widths = *widths;
  po.held_out_fraction = held;
  // The gate runs on the GPU (ffnjit's own gate kernel) unless --cpu or no GPU is found.
  model::GateFn gate = model::cpu_gate(int(*threads));
  po.source = "ffnjit profile (cpu gate)";
  if (!args.has("cpu")) {
    if (auto g = gpu_gate(int(*device)); g) {
      gate = std::move(*g);
      po.source = "ffnjit profile (gpu gate_pack)";
      po.batch_tokens = 8192;
    } else {
      std::fprintf(stderr, "ffnjit profile: no GPU (%s); computing the gate on the CPU\n",
                   g.error().message.c_str());
    }
  }
  auto run = model::profile_checkpoint(*ck, *inputs, po, gate);
  if (!run) return report_error(cmd, run.error().message);

  std::printf("checkpoint: %s (%s, %s naming, %zu %s ReLU FFN layers, fingerprint %s)\n",
              args.get("checkpoint").c_str(),
              info.model_type.empty() ? "no model_type" : info.model_type.c_str(),
              info.naming.c_str(), info.layers.size(), info.layers[0].gated ? "gated" : "non-gated",
              info.fingerprint.substr(0, 12).c_str());
  for (const auto& n : info.notes) std::printf("note: %s\n", n.c_str());
  for (int l : run->layers_without_inputs)
    std::printf("note: layer %d has no inputs and is not profiled\n", l);
  const int show_tile = spec_width_recorded ? int(*spec_tile) : widths->back();
  std::printf("\n%5s %6s %7s %7s | %-27s | tile_n %d: max p99.9  mean\n", "layer", "d_ff", "tokens",
              "dead", "active per token: mean  p99  max", show_tile);
  for (const auto& l : run->profile.layers) {
    const auto s = profile::Summary::of(l.per_token);
    const auto* t = l.tiling(show_tile);
    std::printf("%5d %6d %7llu %6.1f%% | %9.2f (%5.2f%%) %4u %4u | %13u %5u %5.2f\n", l.index,
                l.d_ff, (unsigned long long)l.tokens,
                100.0 * double(l.dead_neurons.size()) / l.d_ff, s.mean, 100 * s.mean / l.d_ff,
                s.p99, s.max, t ? t->per_tile.max() : 0, t ? t->per_tile.quantile(0.999) : 0,
                t ? t->per_tile.mean() : 0.0);
  }
  if (args.has("specialize"))
    print_specializations(*ck, *run, int(*spec_tile), args.has("prune-dead"));
  if (args.has("screen"))
    if (int rc = print_screen(*ck, *inputs, *screen_tokens); rc) return rc;
  if (args.has("output")) {
    if (auto s = profile::write(args.get("output"), run->profile); !s)
      return report_error(cmd, s.message());
    std::printf("\nwrote %s\n", args.get("output").c_str());
  }
  return 0;
}

}  // namespace ffnjit::cli
