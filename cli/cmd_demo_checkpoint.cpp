// `ffnjit demo-checkpoint`: writes a small synthetic ReLU-gated checkpoint and captured FFN inputs.
#include <cstdio>
#include <filesystem>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "model/demo.hpp"

namespace ffnjit::cli {

int cmd_demo_checkpoint(const Argv& argv) {
  const char* cmd = "demo-checkpoint";
  Args args(cmd,
            "Writes a synthetic ReLU-gated checkpoint (config.json with model_type "
            "llama_sparse_relu, bf16\n"
            "safetensors) whose sparsity resembles trained sparse LLMs: ~0.5% of neurons active "
            "per token on\n"
            "average, heavy-tailed tokens, hot and dead neurons. Also writes inputs.safetensors "
            "with captured\n"
            "FFN inputs (layers.N.input) for `ffnjit profile`. Deterministic for a given --seed.\n"
            "example: ffnjit demo-checkpoint demo && ffnjit profile demo --inputs "
            "demo/inputs.safetensors");
  args.positional("dir", "directory to write (created if missing)");
  args.option("layers", "N", "number of layers", std::string("4"));
  args.option("d-model", "N", "hidden size (multiple of 8)", std::string("512"));
  args.option("d-ff", "N", "FFN width (multiple of 8)", std::string("1536"));
  args.option("tokens", "N", "captured input tokens per layer", std::string("2048"));
  args.option("seed", "N", "random seed", std::string("1"));
  args.option("shards", "N", "split the weights into N shards with an index", std::string("1"));
  args.flag("force", "overwrite a directory that already holds a config.json");
  if (auto s = args.parse(argv); !s) return report_error(cmd, s.message(), 2);
  if (args.help_requested()) return std::printf("%s", args.help().c_str()), 0;

  model::DemoOptions o;
  struct IntOpt {
    const char* name;
    int lo, hi;
    int* out;
  };
  int tokens = 0;
  const IntOpt ints[] = {{"layers", 1, 1024, &o.layers},
                         {"d-model", 16, 65536, &o.d_model},
                         {"d-ff", 16, 65536, &o.d_ff},
                         {"tokens", 1, 1 << 22, &tokens},
                         {"shards", 1, 1000, &o.shards}};
  for (const IntOpt& i : ints) {
    auto x = args.get_int(i.name, i.lo, i.hi);
    if (!x) return report_error(cmd, x.error().message, 2);
    *i.out = *x;
  }
  o.tokens = tokens;
  auto seed = args.get_int64("seed", 0, int64_t(1) << 62);
  if (!seed) return report_error(cmd, seed.error().message, 2);
  o.seed = uint64_t(*seed);
  const std::string dir = args.get("dir");
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::path(dir) / "config.json", ec) && !args.has("force"))
    return report_error(cmd, dir + " already holds a config.json; pass --force to overwrite it", 2);
  if (auto s = model::write_demo_checkpoint(dir, o); !s) return report_error(cmd, s.message());
  std::printf(
      "wrote a demo checkpoint to %s: %d layers, d_model %d, d_ff %d, llama_sparse_relu, bf16%s\n",
      dir.c_str(), o.layers, o.d_model, o.d_ff, o.shards > 1 ? ", sharded" : "");
  std::printf("captured FFN inputs: %s/inputs.safetensors (%lld tokens per layer)\n", dir.c_str(),
              (long long)o.tokens);
  std::printf("next: ffnjit profile %s --inputs %s/inputs.safetensors -o %s/profile.json\n",
              dir.c_str(), dir.c_str(), dir.c_str());
  return 0;
}

}  // namespace ffnjit::cli
