// `ffnjit bench`: ffnjit's served path against the cuBLASLt dense path, same process.
#include <cstdio>
#include <map>

#include "cache/location.hpp"
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "support/strings.hpp"
#include "tuner/bench.hpp"

namespace ffnjit::cli {
namespace {

Expected<std::vector<int>> int_list(const Args& args, const std::string& name) {
  std::vector<int> out;
  for (const auto& part : split(args.get(name), ',')) {
    char* end = nullptr;
    long v = std::strtol(part.c_str(), &end, 10);
    if (part.empty() || *end || v < 1 || v > (1 << 24))
      return user_error("--" + name + " takes positive integers separated by commas, got '" + args.get(name) + "'");
    out.push_back(int(v));
  }
  return out;
}

void print_rows(const std::vector<BenchRow>& rows, bool checkpoint) {
  std::printf("%6s %-9s %7s %5s %8s %9s %10s %10s %10s %7s %7s %8s  %-13s %s\n", "layer", "rows", "tokens", "k",
              "k_seen", "overflow", "dense_us", "untuned_us", "ffnjit_us", "untuned", "ratio", "rel_err", "served by",
              "ffnjit kernels");
  for (const auto& r : rows)
    std::printf("%6s %-9s %7d %5s %8.1f %8.3f%% %10.1f %10.1f %10.1f %6.2fx %6.2fx %8.1e  %-13s %s\n",
                checkpoint ? std::to_string(r.layer).c_str() : "-", r.rows.c_str(), r.tokens,
                checkpoint ? "-" : std::to_string(r.k).c_str(), r.measured_k, 100 * r.overflow_rate, r.dense.median_us,
                r.untuned.median_us, r.tuned.median_us, r.ratio_untuned(), r.ratio_tuned(), r.rel_error,
                r.tuned_source.empty() ? "defaults" : r.tuned_source.c_str(), r.tuned_kernels.c_str());
}

// Whole model: per (rows, tokens), the sums over layers.
void print_model(const std::vector<BenchRow>& rows) {
  struct Sum {
    double dense = 0, untuned = 0, tuned = 0, worst = 1e30;
    int layers = 0;
  };
  std::map<std::pair<std::string, int>, Sum> sums;
  for (const auto& r : rows) {
    auto& s = sums[{r.rows, r.tokens}];
    s.dense += r.dense.median_us, s.untuned += r.untuned.median_us, s.tuned += r.tuned.median_us, ++s.layers;
    s.worst = std::min(s.worst, r.ratio_tuned());
  }
  std::printf("\nwhole model (sum over layers; ratio = dense / ffnjit)\n%-9s %7s %7s %11s %11s %11s %8s %8s %12s\n",
              "rows", "tokens", "layers", "dense_us", "untuned_us", "tuned_us", "untuned", "tuned", "worst layer");
  for (const auto& [key, s] : sums)
    std::printf("%-9s %7d %7d %11.1f %11.1f %11.1f %7.2fx %7.2fx %11.2fx\n", key.first.c_str(), key.second, s.layers,
                s.dense, s.untuned, s.tuned, s.dense / s.untuned, s.dense / s.tuned, s.worst);
}

}  // namespace

int cmd_bench(const Argv& argv) {
  Args args("bench",
            "Times ffnjit's FFN against the dense cuBLASLt FFN (both captured in CUDA graphs, L2 flushed) and\n"
            "checks ffnjit's output against the fp64 reference. Synthetic layers where ~k of d_ff neurons fire\n"
            "per token, or (--checkpoint) every FFN layer of a checkpoint on its captured inputs, served from the\n"
            "cache as an engine is (tuned records by layer id, docs/identity.md) next to the untuned defaults.\n"
            "Needs a GPU.");
  args.option("d-model", "N", "hidden size (synthetic)", std::string("2048"))
      .option("d-ff", "N", "FFN intermediate size (synthetic)", std::string("5632"))
      .flag("non-gated", "non-gated FFN: relu(x Wu^T) Wd^T (synthetic)")
      .option("tokens", "LIST", "token counts", std::string("1,16,128,2048,8192,32768"))
      .option("k", "LIST", "mean active neurons per token (synthetic)", std::string("29,56,112,282"))
      .flag("heavy", "synthetic heavy-tailed tokens: 10% of tokens fire several times more neurons")
      .flag("tuned", "synthetic: per row, select a choice as `ffnjit tune` does (minutes) and serve it, next to "
                     "the untuned defaults")
      .flag("shift", "synthetic: select on uniform tokens, serve heavy-tailed ones (distribution shift)")
      .option("checkpoint", "DIR", "benchmark every FFN layer of this checkpoint on its captured inputs")
      .option("inputs", "FILE", "captured inputs (default: <checkpoint>/inputs.safetensors)")
      .option("cache", "PATH", "cache with the tuned records (default: $FFNJIT_CACHE or $XDG_CACHE_HOME/ffnjit/cache.db)")
      .option("heaviest", "LIST", "checkpoint: also time the N rows with the most active neurons", std::string("1,64,512"))
      .option("samples", "N", "timed samples per measurement (median reported)", std::string("15"))
      .option("device", "N", "GPU ordinal", std::string("0"))
      .option("csv", "FILE", "also write the rows as CSV");
  if (auto s = args.parse(argv); !s) return report_error("bench", s.message(), 2);
  if (args.help_requested()) return std::printf("%s", args.help().c_str()), 0;
  BenchOptions o;
  auto dm = args.get_int("d-model", 8, 65536), dff = args.get_int("d-ff", 8, 1 << 20),
       samples = args.get_int("samples", 3, 1000), dev = args.get_int("device", 0, 64);
  for (auto* e : {&dm, &dff, &samples, &dev})
    if (!*e) return report_error("bench", e->error().message, 2);
  auto tokens = int_list(args, "tokens"), k = int_list(args, "k"), heaviest = int_list(args, "heaviest");
  for (auto* l : {&tokens, &k, &heaviest})
    if (!*l) return report_error("bench", l->error().message, 2);
  o.d_model = int(*dm), o.d_ff = int(*dff), o.gated = !args.has("non-gated"), o.tokens = *tokens, o.k = *k;
  o.heavy = args.has("heavy"), o.tuned = args.has("tuned"), o.shift = args.has("shift"), o.device = int(*dev);
  o.measure.samples = int(*samples), o.heaviest = *heaviest;
  o.checkpoint = args.get("checkpoint"), o.inputs = args.get("inputs");
  const bool checkpoint = !o.checkpoint.empty();
  if (checkpoint) {
    auto path = cache::resolve_cache_path(args.has("cache") ? args.get("cache").c_str() : nullptr);
    if (!path) return report_error("bench", path.error().message, 2);
    o.cache_path = *path;
  }
  if (checkpoint && (o.heavy || o.tuned || o.shift))
    return report_error("bench", "--heavy, --tuned and --shift are synthetic options; with --checkpoint the tuned "
                                 "records come from the cache (`ffnjit tune` first)", 2);
  if (!checkpoint)
    for (int kk : o.k)
      if (kk > o.d_ff) return report_error("bench", "--k " + std::to_string(kk) + " exceeds --d-ff", 2);

  std::FILE* csv = nullptr;
  if (args.has("csv")) {
    csv = std::fopen(args.get("csv").c_str(), "w");
    if (!csv) return report_error("bench", "cannot write " + args.get("csv") + "; check the directory exists");
    std::fprintf(csv, "d_model,d_ff,gated,rows,layer,tokens,k,measured_k,overflow_rate,dense_us,untuned_us,ffnjit_us,"
                      "ratio,untuned_ratio,dense_spread,ffnjit_spread,rel_error,served_by,kernels\n");
  }
  std::fprintf(stderr, "benchmarking on GPU %d...\n", o.device);
  auto rows = run_bench(o, [&](const BenchRow& r, int done, int total) {
    std::fprintf(stderr, "\r[%d/%d] layer=%d rows=%s tokens=%d: %.2fx   ", done, total, r.layer, r.rows.c_str(),
                 r.tokens, r.ratio_tuned());
    if (csv)
      std::fprintf(csv, "%d,%d,%d,%s,%d,%d,%d,%.2f,%.5f,%.2f,%.2f,%.2f,%.3f,%.3f,%.3f,%.3f,%.2e,%s,%s\n", o.d_model,
                   o.d_ff, int(o.gated), r.rows.c_str(), r.layer, r.tokens, r.k, r.measured_k, r.overflow_rate,
                   r.dense.median_us, r.untuned.median_us, r.tuned.median_us, r.ratio_tuned(), r.ratio_untuned(),
                   r.dense.spread, r.tuned.spread, r.rel_error,
                   r.tuned_source.empty() ? "defaults" : r.tuned_source.c_str(), r.tuned_kernels.c_str());
  });
  std::fprintf(stderr, "\n");
  if (csv) std::fclose(csv);
  if (!rows) return report_error("bench", rows.error().message);
  if (checkpoint)
    std::printf("checkpoint %s; cache %s; ratio = dense / ffnjit (same process, CUDA graphs, L2 flushed, median)\n",
                o.checkpoint.c_str(), o.cache_path.c_str());
  else
    std::printf("d_model %d, d_ff %d, %s, %s tokens; ratio = dense / ffnjit (same process, CUDA graphs, L2 flushed)\n",
                o.d_model, o.d_ff, o.gated ? "gated" : "non-gated",
                o.shift ? "tuned on uniform, served heavy-tailed" : o.heavy ? "heavy-tailed" : "uniform");
  print_rows(*rows, checkpoint);
  if (checkpoint) print_model(*rows);
  for (const auto& r : *rows)
    if (!(r.rel_error <= 2e-2))
      return report_error("bench", "ffnjit's output disagrees with the fp64 reference (rel_error > 2e-2); this is a bug");
  return 0;
}

}  // namespace ffnjit::cli
