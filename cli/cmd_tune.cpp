// `ffnjit tune <checkpoint>`: pre-tune every FFN layer for the engine's batch buckets.
#include <unistd.h>

#include <csignal>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cache/location.hpp"
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "runtime/buckets.hpp"
#include "runtime/identity.hpp"
#include "support/json.hpp"
#include "tuner/plan.hpp"
#include "tuner/tune.hpp"

namespace ffnjit::cli {
namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_sigint(int) {
  if (g_stop.exchange(true)) std::_Exit(130);  // second Ctrl-C: stop now
}

void draw_progress(const TuneProgress& p) {
  if (!isatty(STDERR_FILENO)) {  // logs: one line per entry instead of a redrawn bar
    if (p.done < p.total) std::fprintf(stderr, "[%d/%d] %4.0fs %s\n", p.done + 1, p.total, p.elapsed_s, p.current.c_str());
    return;
  }
  const int width = 30;
  const int filled = p.total ? width * p.done / p.total : width;
  const double eta = p.done ? p.elapsed_s / p.done * (p.total - p.done) : 0;
  std::fprintf(stderr, "\r[%.*s%*s] %d/%d  %4.0fs elapsed  ETA %s  %-40.40s", filled,
               "==============================", width - filled, "", p.done, p.total, p.elapsed_s,
               p.done ? (std::to_string(int(eta)) + "s").c_str() : "?", p.current.c_str());
  if (p.done == p.total) std::fprintf(stderr, "\n");
}

}  // namespace

int cmd_tune(const Argv& argv) {
  Args args("tune",
            "Pre-tunes every FFN layer of a checkpoint for the batch buckets an engine uses: compiles the\n"
            "candidate kernels in parallel, times them on the GPU, keeps only candidates whose output matches\n"
            "the fp64 reference, falls back to dense where sparse does not win, and stores the compiled\n"
            "kernels and winners in the cache. Resumable: rerun the same command after an interruption.");
  args.positional("checkpoint", "directory with config.json and model.safetensors (or a sharded index)")
      .option("profile", "FILE", "sparsity profile from `ffnjit profile` (per-layer capacity)")
      .option("inputs", "FILE",
              "captured FFN inputs (safetensors, layers.N.input) to time on; default: "
              "<checkpoint>/inputs.safetensors when present, else Gaussian inputs")
      .option("buckets", "LIST",
              "token buckets: the runtime's table, or buckets made of whole runtime buckets (e.g. 1-4)",
              format_buckets(default_buckets()))
      .option("tensor-parallel", "N",
              "also a TP engine's view: tune each layer's N shards (d_ff / N rows each) under their shard ids",
              std::string("1"))
      .option("budget", "SECONDS", "stop starting new entries after this long (0: no limit)", std::string("0"))
      .option("shard", "I/N", "tune only entries i, i+n, ... (merge shards with `ffnjit cache merge`)",
              std::string("0/1"))
      .flag("compile-only", "no GPU: compile and store every default configuration, marked untimed")
      .option("arch", "ARCH", "target for --compile-only (with a GPU: the GPU's)", std::string("sm_90a"))
      .option("samples", "N", "timed samples per candidate (median kept)", std::string("9"))
      .option("device", "N", "GPU ordinal", std::string("0"))
      .option("cache", "PATH", "cache database (default: $FFNJIT_CACHE or $XDG_CACHE_HOME/ffnjit/cache.db)")
      .flag("json", "print the summary as JSON on stdout");
  if (auto s = args.parse(argv); !s) return report_error("tune", s.message(), 2);
  if (args.help_requested()) return std::printf("%s", args.help().c_str()), 0;

  TuneOptions o;
  o.checkpoint = args.get("checkpoint");
  o.profile = args.get("profile");
  o.inputs = args.get("inputs");
  auto cache_path = cache::resolve_cache_path(args.has("cache") ? args.get("cache").c_str() : nullptr);
  if (!cache_path) return report_error("tune", cache_path.error().message, 2);
  o.cache_path = *cache_path;
  auto buckets = parse_buckets(args.get("buckets"));
  if (!buckets) return report_error("tune", buckets.error().message, 2);
  o.buckets = *buckets;
  auto budget = args.get_int("budget", 0, 1 << 30), samples = args.get_int("samples", 3, 1000),
       device = args.get_int("device", 0, 64), tp = args.get_int("tensor-parallel", 1, kMaxTensorParallel);
  for (auto* e : {&budget, &samples, &device, &tp})
    if (!*e) return report_error("tune", e->error().message, 2);
  o.budget_s = double(*budget), o.measure.samples = int(*samples), o.device = int(*device);
  o.tensor_parallel = int(*tp);
  auto shard = parse_shard(args.get("shard"));
  if (!shard) return report_error("tune", shard.error().message, 2);
  o.shard = shard->index, o.shards = shard->count;
  o.compile_only = args.has("compile-only");
  auto arch = parse_arch(args.get("arch"));
  if (!arch) return report_error("tune", arch.error().message, 2);
  o.compile_arch = *arch;
  o.stop = &g_stop;
  std::signal(SIGINT, on_sigint);

  auto r = run_tune(o, draw_progress);
  std::signal(SIGINT, SIG_DFL);
  if (!r) return report_error("tune", r.error().message);

  if (args.has("json")) {
    nlohmann::json j = {{"checkpoint", o.checkpoint}, {"cache", o.cache_path}, {"entries", nlohmann::json::array()},
                        {"entries_left", r->entries_left}, {"interrupted", r->interrupted},
                        {"fingerprint", r->fingerprint}};
    for (const auto& row : r->rows)
      j["entries"].push_back({{"layer_id", row.signature}, {"layer", row.layers}, {"shape", row.shape},
                              {"bucket", row.bucket}, {"winner", row.winner}, {"winner_us", row.winner_us},
                              {"untuned_us", row.default_us}, {"dense_us", row.dense_us},
                              {"speedup", row.speedup()}, {"untimed", row.untimed}, {"resumed", row.resumed},
                              {"candidates", row.candidates}, {"rejected", row.rejected}});
    std::printf("%s\n", dump_json(j, 2).c_str());  // a non-UTF-8 path becomes U+FFFD, no throw
  } else {
    std::printf("%-14s %-26s %-10s %-52s %10s %10s %10s %8s\n", "layer", "shape", "bucket", "winner", "time_us",
                "untuned_us", "dense_us", "speedup");
    for (const auto& row : r->rows) {
      char t[32] = "untimed", u[32] = "-", d[32] = "-", sp[32] = "-";
      if (!row.untimed) {
        std::snprintf(t, sizeof t, "%.1f", row.winner_us);
        std::snprintf(d, sizeof d, "%.1f", row.dense_us);
        std::snprintf(sp, sizeof sp, "%.2fx", row.speedup());
        if (row.default_us > 0) std::snprintf(u, sizeof u, "%.1f", row.default_us);
      }
      std::printf("%-14s %-26s %-10s %-52s %10s %10s %10s %8s%s\n", row.layers.c_str(), row.shape.c_str(),
                  row.bucket.c_str(), row.winner.c_str(), t, u, d, sp, row.resumed ? "  (from an earlier run)" : "");
    }
    std::printf("timed on: %s\nrecords: per layer under <fingerprint>:<layer> (docs/identity.md), and %d shape "
                "records for engines without layer ids\ncheckpoint fingerprint: %s\ncache: %s\n",
                r->input_source.c_str(), r->shape_records, r->fingerprint.c_str(), o.cache_path.c_str());
  }
  if (r->entries_left) {
    std::fprintf(stderr, "ffnjit tune: %d of %d entries not tuned (%s); run the same command again to continue\n",
                 r->entries_left, r->entries_planned, r->interrupted ? "interrupted" : "--budget reached");
    return r->interrupted ? 130 : 0;
  }
  return 0;
}

}  // namespace ffnjit::cli
