// The CUDA templates embedded at build time (see templates/CMakeLists.txt).
#pragma once

#include <span>
#include <string_view>

namespace ffnjit {

struct EmbeddedFile {
  std::string_view path;  // relative to templates/, e.g. "ffnjit/gate_pack.cuh"
  std::string_view text;
};

std::span<const EmbeddedFile> embedded_templates();

}  // namespace ffnjit
