// `ffnjit inspect`: generated CUDA source, PTX or ptxas resources for a shape, no GPU needed.
#include <cstdio>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/spec_args.hpp"
#include "codegen/compile.hpp"
#include "codegen/source.hpp"

namespace ffnjit::cli {

int cmd_inspect(const Argv& argv) {
  Args args("inspect",
            "Generates the kernel for a layer shape and configuration and prints its CUDA source,\n"
            "its PTX, or the ptxas resource report (registers, spills, shared memory). Needs no GPU.\n"
            "example: ffnjit inspect --d-model 2048 --d-ff 5632 --gated --tokens 2048 --arch sm_90a");
  add_spec_options(args);
  args.option("emit", "WHAT", "what to print: source, ptx, resources, name or spec", std::string("source"));
  if (auto s = args.parse(argv); !s) return report_error("inspect", s.message(), 2);
  if (args.help_requested()) return std::printf("%s", args.help().c_str()), 0;

  const std::string emit = args.get("emit");
  if (emit != "source" && emit != "ptx" && emit != "resources" && emit != "name" && emit != "spec")
    return report_error("inspect", "--emit " + emit + " is not one of source, ptx, resources, name, spec", 2);
  auto spec = spec_from_args(args);
  if (!spec) return report_error("inspect", spec.error().message, 2);
  if (emit == "name") return std::printf("%s\n", spec->kernel_name().c_str()), 0;
  if (emit == "spec") return std::printf("%s\n", spec->canonical().c_str()), 0;

  auto src = generate_source(*spec);
  if (!src) return report_error("inspect", src.error().message);
  if (emit == "source") {
    std::fwrite(src->text.data(), 1, src->text.size(), stdout);
    return 0;
  }
  CompileOptions opts;
  opts.want_ptx = emit == "ptx";
  auto k = compile(*src, opts);
  if (!k) return report_error("inspect", k.error().message);
  if (emit == "ptx") {
    std::fwrite(k->ptx.data(), 1, k->ptx.size(), stdout);
  } else {
    std::printf("kernel: %s\narch: %s\nthreads per block: %d\n%scompile time: %.0f ms\ncubin: %zu bytes\n",
                k->kernel_name.c_str(), k->arch.c_str(), spec->block_threads(),
                format_resources(k->resources).c_str(), k->compile_ms, k->cubin.size());
  }
  return 0;
}

}  // namespace ffnjit::cli
