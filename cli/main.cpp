// ffnjit command-line entry point: dispatches to one subcommand per file.
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/commands.hpp"
#include "codegen/version.hpp"
#include "ffnjit/ffnjit.h"

namespace {

struct Command {
  const char* name;
  int (*run)(const ffnjit::cli::Argv&);
  const char* summary;
};

// One row per subcommand; keep in the order `ffnjit --help` should list them.
const Command kCommands[] = {
    {"tune", ffnjit::cli::cmd_tune, "pre-tune every FFN layer of a checkpoint; store winners in the cache"},
    {"inspect", ffnjit::cli::cmd_inspect, "print generated CUDA, PTX or the resource report"},
    {"bench", ffnjit::cli::cmd_bench, "time ffnjit's sparse FFN against the dense cuBLASLt FFN (GPU)"},
    {"profile", ffnjit::cli::cmd_profile, "measure a checkpoint's sparsity on captured inputs; write a profile"},
    {"cache", ffnjit::cli::cmd_cache, "list, show, export, import, merge, gc and verify the kernel cache"},
    {"demo-checkpoint", ffnjit::cli::cmd_demo_checkpoint, "write a small synthetic ReLU-gated checkpoint + inputs"},
    {"doctor", ffnjit::cli::cmd_doctor, "report toolkit, NVRTC, driver, GPUs and cache location"},
};

void print_usage(FILE* out) {
  std::fprintf(out, "usage: ffnjit <command> [options]\n\ncommands:\n");
  for (const auto& c : kCommands) std::fprintf(out, "  %-16s %s\n", c.name, c.summary);
  std::fprintf(out, "\nrun `ffnjit <command> --help` for a command's options\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    print_usage(stdout);
    return 0;
  }
  if (cmd == "--version") {
    // The release (ffnjit.h, as ffnjit_version() and the Python package report it), then
    // the code generator's version, which is part of every cache key.
    std::printf("ffnjit %s (generator %s)\n", FFNJIT_VERSION_STRING, ffnjit::kGeneratorVersion);
    return 0;
  }
  ffnjit::cli::Argv rest(argv + 2, argv + argc);
  for (const auto& c : kCommands)
    if (cmd == c.name) return c.run(rest);
  std::fprintf(stderr, "ffnjit: error: unknown command '%s'; run `ffnjit --help` for the list\n",
               cmd.c_str());
  return 2;
}
