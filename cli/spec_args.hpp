// The flags that describe a layer and a kernel configuration, shared by CLI commands.
#pragma once

#include "cli/args.hpp"
#include "codegen/kernel_spec.hpp"

namespace ffnjit::cli {

// Declares --d-model, --d-ff, --gated/--non-gated, --activation, --bias, --tokens, --arch, --family
// and the tile overrides (--tile-n, --capacity, --bm, --bk, --warps-m, --warps-n,
// --stages, --threads, --splits).
void add_spec_options(Args& args);

// Builds the default spec for the shape and bucket, applies overrides, validates.
Expected<KernelSpec> spec_from_args(const Args& args);

}  // namespace ffnjit::cli
