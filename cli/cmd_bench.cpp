// `ffnjit bench`: ffnjit's sparse path against the cuBLASLt dense path, same process.
#include <cstdio>

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

}  // namespace

int cmd_bench(const Argv& argv) {
  Args args("bench",
            "Times ffnjit's sparse FFN against the dense cuBLASLt FFN (both captured in CUDA graphs) on\n"
            "synthetic weights where ~k of d_ff neurons fire per token; checks the outputs against each\n"
            "other and prints dense time / ffnjit time. Needs a GPU.");
  args.option("d-model", "N", "hidden size", std::string("2048"))
      .option("d-ff", "N", "FFN intermediate size", std::string("5632"))
      .flag("non-gated", "non-gated FFN: relu(x Wu^T) Wd^T")
      .option("tokens", "LIST", "token counts", std::string("1,16,128,2048,8192,32768"))
      .option("k", "LIST", "mean active neurons per token", std::string("29,56,112,282"))
      .flag("heavy", "heavy-tailed tokens: 10% of tokens fire several times more neurons")
      .flag("tuned", "per row, search the tuner's candidates as `ffnjit tune` does and time the winner, or "
                     "the dense fallback where it is as fast (minutes); default: the untuned defaults")
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
  auto tokens = int_list(args, "tokens"), k = int_list(args, "k");
  if (!tokens) return report_error("bench", tokens.error().message, 2);
  if (!k) return report_error("bench", k.error().message, 2);
  o.d_model = int(*dm), o.d_ff = int(*dff), o.gated = !args.has("non-gated"), o.tokens = *tokens, o.k = *k;
  o.heavy = args.has("heavy"), o.tuned = args.has("tuned"), o.device = int(*dev), o.measure.samples = int(*samples);
  for (int kk : o.k)
    if (kk > o.d_ff) return report_error("bench", "--k " + std::to_string(kk) + " exceeds --d-ff", 2);

  std::FILE* csv = nullptr;
  if (args.has("csv")) {
    csv = std::fopen(args.get("csv").c_str(), "w");
    if (!csv) return report_error("bench", "cannot write " + args.get("csv") + "; check the directory exists");
    std::fprintf(csv, "d_model,d_ff,gated,heavy,tokens,k,measured_k,overflow_rate,dense_us,ffnjit_us,ratio,"
                      "dense_spread,ffnjit_spread,rel_diff,kernels\n");
  }
  std::fprintf(stderr, "benchmarking %zu configurations on GPU %d...\n", o.k.size() * o.tokens.size(), o.device);
  auto rows = run_bench(o, [&](const BenchRow& r, int done, int total) {
    std::fprintf(stderr, "\r[%d/%d] tokens=%d k=%d: %.2fx   ", done, total, r.tokens, r.k, r.ratio);
    if (csv)
      std::fprintf(csv, "%d,%d,%d,%d,%d,%d,%.2f,%.5f,%.2f,%.2f,%.3f,%.3f,%.3f,%.2e,%s\n", o.d_model, o.d_ff,
                   int(o.gated), int(o.heavy), r.tokens, r.k, r.measured_k, r.overflow_rate, r.dense.median_us,
                   r.sparse.median_us, r.ratio, r.dense.spread, r.sparse.spread, r.rel_diff, r.sparse_kernels.c_str());
  });
  std::fprintf(stderr, "\n");
  if (csv) std::fclose(csv);
  if (!rows) return report_error("bench", rows.error().message);
  std::printf("d_model %d, d_ff %d, %s%s; ffnjit %s; ratio = dense / ffnjit (same process, CUDA graphs, median)\n",
              o.d_model, o.d_ff, o.gated ? "gated" : "non-gated", o.heavy ? ", heavy-tailed tokens" : "",
              o.tuned ? "tuned per row (dense fallback where dense is as fast)" : "untuned defaults");
  std::printf("%8s %5s %8s %9s %11s %11s %7s %9s  %s\n", "tokens", "k", "k_seen", "overflow", "dense_us", "ffnjit_us",
              "ratio", "rel_diff", "ffnjit kernels");
  bool agree = true;
  for (const auto& r : *rows) {
    std::printf("%8d %5d %8.1f %8.3f%% %11.1f %11.1f %6.2fx %9.1e  %s\n", r.tokens, r.k, r.measured_k,
                100 * r.overflow_rate, r.dense.median_us, r.sparse.median_us, r.ratio, r.rel_diff,
                r.sparse_kernels.c_str());
    agree &= r.rel_diff <= 2e-2;
  }
  if (!agree) return report_error("bench", "ffnjit and dense outputs disagree (rel_diff > 2e-2); this is a bug");
  return 0;
}

}  // namespace ffnjit::cli
