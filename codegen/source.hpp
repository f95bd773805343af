// Stage 1 of the pipeline: KernelSpec -> Source (rendered CUDA translation unit).
#pragma once

#include <span>
#include <string>

#include "codegen/kernel_spec.hpp"
#include "support/status.hpp"
#include "templates/embedded.hpp"

namespace ffnjit {

struct Source {
  KernelSpec spec;
  std::string kernel_name;    // the extern "C" symbol
  std::string text;           // the generated translation unit, banner first
  std::string spec_hash;      // short hash of spec.canonical()
  std::string template_hash;  // short hash of every embedded template file
};

// Renders the family's instantiation template for a validated spec. Deterministic:
// the same spec and templates give byte-identical text.
Expected<Source> generate_source(const KernelSpec& spec);

// Hash over all embedded template files (paths and contents).
const std::string& templates_hash();

// Embedded device headers, as NVRTC include names and contents.
std::span<const EmbeddedFile> device_headers();

}  // namespace ffnjit
