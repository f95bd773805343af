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
    long long lo, hi;
  };
  long long v[6];
  const IntOpt ints[] = {{"layers", 1, 1024},    {"d-model", 16, 65536},   {"d-ff", 16, 65536},
                         {"tokens", 1, 1 << 22}, {"seed", 0, (1LL << 62)}, {"shards", 1, 1000}};
  for (int i = 0; i < 6; ++i) {
    auto x = args.get_int(ints[i].name, ints[i].lo, ints[i].hi);
    if (!x) return report_error(cmd, x.error().message, 2);
    v[i] = *x;
  }
  o.layers = int(v[0]), o.d_model = int(v[1]), o.d_ff = int(v[2]), o.tokens = v[3],
  o.seed = uint64_t(v[4]);
  o.shards = int(v[5]);
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
