// Stage 3 of the pipeline: CompiledKernel -> LoadedKernel, and the in-process table
// that serves kernels by spec (lookup -> render -> compile -> load).
#pragma once

#include <cuda.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <optional>
#include <unordered_map>

#include "codegen/compile.hpp"
#include "codegen/kernel_spec.hpp"
#include "runtime/device.hpp"
#include "runtime/lt_gemm.hpp"

namespace ffnjit {

struct LoadedKernel {
  KernelSpec spec;
  std::string name;
  CUmodule module = nullptr;
  CUfunction function = nullptr;
  int threads = 0;
  int dynamic_smem = 0;
  ResourceReport resources;
};

// Loads a cubin into the current context and prepares the launch attributes.
Expected<std::unique_ptr<LoadedKernel>> load_kernel(const CompiledKernel& k, const KernelSpec& spec);

// Launches `k` with its single by-value parameter struct on `stream`.
Status launch(const LoadedKernel& k, unsigned grid_x, unsigned grid_y, const void* params, CUstream stream,
              unsigned block_x = 0, unsigned block_y = 1);

// Launches `k` behind the kernel before it on `stream` with programmatic dependent
// launch (sm_90a): it may start while that kernel finishes, and its
// grid_dependency_wait() orders every read of the predecessor's output. Only for a
// forward's second and later kernels, whose templates call that wait. Other targets,
// or FFNJIT_NO_PDL=1 in the environment (read once), use an ordinary launch.
Status launch_dependent(const LoadedKernel& k, unsigned grid_x, unsigned grid_y, const void* params, CUstream stream);

// Kernels for one device context, keyed by the spec's canonical text. Thread-safe;
// compiles at most once per spec for the life of the table.
class KernelTable {
 public:
  // Lookup -> render -> compile -> load (the compile happens once per spec).
  Expected<const LoadedKernel*> get(const KernelSpec& spec);
  // Loads an already compiled kernel (from the cache or a tuner's compile pool) for
  // `spec`; a spec already present is returned as is.
  Expected<const LoadedKernel*> add(const KernelSpec& spec, const CompiledKernel& k);
  // Where compiled kernels persist (the SQLite cache): looked up by content key
  // before compiling, and told about every kernel this table compiles.
  struct Backing {
    std::function<Expected<std::optional<CompiledKernel>>(const std::string& key)> find;
    std::function<Status(const Source&, const CompiledKernel&)> store;
    bool allow_compile = true;  // false: a kernel missing from the backing is an error
  };
  void set_backing(Backing b) { backing_ = std::move(b); }
  int loaded_from_backing() const { return backing_loads_.load(); }
  int compiles() const { return compiles_.load(); }
  // cuBLASLt GEMM plans for the same device (created on first use).
  Expected<LtGemms*> gemms();
  ~KernelTable();

 private:
  std::mutex mu_;
  std::unique_ptr<LtGemms> gemms_;
  std::unordered_map<std::string, std::unique_ptr<LoadedKernel>> table_;
  std::atomic<int> compiles_{0}, backing_loads_{0};
  Backing backing_;
};

}  // namespace ffnjit
