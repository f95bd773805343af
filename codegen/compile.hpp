// Stage 2 of the pipeline: Source -> CompiledKernel (cubin, PTX, ptxas resources) via NVRTC.
#pragma once

#include <string>
#include <vector>

#include "codegen/source.hpp"
#include "support/status.hpp"

namespace ffnjit {

// What ptxas reported for the kernel (from --ptxas-options=-v).
struct ResourceReport {
  int registers = -1;
  int barriers = 0;
  int stack_frame_bytes = 0;
  int spill_store_bytes = 0;
  int spill_load_bytes = 0;
  int static_smem_bytes = 0;
  int constant_bytes = 0;
  int dynamic_smem_bytes = 0;  // what the launch requests (from the spec)
  bool spills() const { return spill_store_bytes > 0 || spill_load_bytes > 0 || stack_frame_bytes > 0; }
};

// Parses ptxas -v output for `kernel_name`; missing lines leave defaults.
ResourceReport parse_ptxas_report(const std::string& log, const std::string& kernel_name);
std::string format_resources(const ResourceReport& r);

struct CompileOptions {
  bool want_ptx = false;   // also keep the PTX (a second, virtual-arch pass if needed)
  bool line_info = false;  // -lineinfo, for profilers
};

struct CompiledKernel {
  std::string kernel_name;
  std::string lowered_name;  // the symbol to look up in the cubin
  std::string arch;          // e.g. sm_90a
  std::string cubin;
  std::string ptx;           // empty unless requested
  ResourceReport resources;
  std::string log;           // NVRTC/ptxas log
  std::vector<std::string> options;
  double compile_ms = 0;
  std::string key;           // content key: source, templates, generator, NVRTC, arch, options
};

// Compiles with NVRTC for the spec's real target. A compile failure is an Error of
// kind kCompile whose message carries the options and the full log.
Expected<CompiledKernel> compile(const Source& src, const CompileOptions& opts = {});

// The NVRTC options compile() uses, and the content key of the binary it would
// produce: lets a cache lookup happen before (instead of) compiling.
std::vector<std::string> compile_options(const Source& src, const CompileOptions& opts = {});
std::string compile_key(const Source& src, const CompileOptions& opts = {});

// "13.0" (major.minor of the NVRTC library in use).
std::string nvrtc_version();

}  // namespace ffnjit
