// Stage 3 of the pipeline: CompiledKernel -> LoadedKernel, and the in-process table.
#include "runtime/kernels.hpp"

#include "support/env.hpp"

#include <cstdlib>

namespace ffnjit {

Expected<std::unique_ptr<LoadedKernel>> load_kernel(const CompiledKernel& k, const KernelSpec& spec) {
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  auto lk = std::make_unique<LoadedKernel>();
  lk->spec = spec;
  lk->name = k.kernel_name;
  lk->threads = spec.block_threads();
  lk->dynamic_smem = spec.dynamic_smem_bytes();
  lk->resources = k.resources;
  FFNJIT_CU(cuModuleLoadData(&lk->module, k.cubin.data()));
  CUresult r = cu->cuModuleGetFunction(&lk->function, lk->module, k.lowered_name.c_str());
  if (r != CUDA_SUCCESS) {
    cu->cuModuleUnload(lk->module);
    return drv::driver_error("cuModuleGetFunction", r);
  }
  if (lk->dynamic_smem > 48 * 1024) {
    r = cu->cuFuncSetAttribute(lk->function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, lk->dynamic_smem);
    if (r != CUDA_SUCCESS) {
      cu->cuModuleUnload(lk->module);
      return drv::driver_error("cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)", r);
    }
  }
  return lk;
}

Status launch(const LoadedKernel& k, unsigned grid_x, unsigned grid_y, const void* params, CUstream stream,
              unsigned block_x, unsigned block_y) {
  if (grid_x == 0 || grid_y == 0) return {};
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  void* args[] = {const_cast<void*>(params)};
  FFNJIT_CU(cuLaunchKernel(k.function, grid_x, grid_y, 1, block_x ? block_x : unsigned(k.threads), block_y, 1,
                           unsigned(k.dynamic_smem), stream, args, nullptr));
  return {};
}

Status launch_dependent(const LoadedKernel& k, unsigned grid_x, unsigned grid_y, const void* params,
                        CUstream stream) {
  static const bool disabled = env::flag(env::kNoPdl);
  if (disabled || k.spec.arch != Arch::kSm90a) return launch(k, grid_x, grid_y, params, stream);
  if (grid_x == 0 || grid_y == 0) return {};
  auto api = drv::api();
  FFNJIT_TRY(api);
  const drv::Api* cu = *api;
  CUlaunchAttribute attr{};
  attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
  attr.value.programmaticStreamSerializationAllowed = 1;
  CUlaunchConfig cfg{};
  cfg.gridDimX = grid_x, cfg.gridDimY = grid_y, cfg.gridDimZ = 1;
  cfg.blockDimX = unsigned(k.threads), cfg.blockDimY = 1, cfg.blockDimZ = 1;
  cfg.sharedMemBytes = unsigned(k.dynamic_smem);
  cfg.hStream = stream;
  cfg.attrs = &attr, cfg.numAttrs = 1;
  void* args[] = {const_cast<void*>(params)};
  FFNJIT_CU(cuLaunchKernelEx(&cfg, k.function, args, nullptr));
  return {};
}

Expected<const LoadedKernel*> KernelTable::get(const KernelSpec& spec) {
  const std::string key = spec.canonical();
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = table_.find(key); it != table_.end()) return it->second.get();
  auto src = generate_source(spec);
  FFNJIT_TRY(src);
  std::optional<CompiledKernel> compiled;
  if (backing_.find) {
    auto found = backing_.find(compile_key(*src));
    FFNJIT_TRY(found);
    if (*found) {
      compiled = std::move(**found);
      ++backing_loads_;
    }
  }
  if (!compiled) {
    if (!backing_.allow_compile)
      return not_found("no cached binary for " + spec.kernel_name() +
                       " and this context may not compile; run `ffnjit tune` for the checkpoint or allow "
                       "compiling on a miss");
    auto c = compile(*src);
    FFNJIT_TRY(c);
    ++compiles_;
    if (backing_.store) FFNJIT_TRY(backing_.store(*src, *c));
    compiled = std::move(*c);
  }
  auto loaded = load_kernel(*compiled, spec);
  FFNJIT_TRY(loaded);
  const LoadedKernel* out = loaded->get();
  table_.emplace(key, std::move(*loaded));
  return out;
}

Expected<const LoadedKernel*> KernelTable::add(const KernelSpec& spec, const CompiledKernel& k) {
  const std::string key = spec.canonical();
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = table_.find(key); it != table_.end()) return it->second.get();
  auto loaded = load_kernel(k, spec);
  FFNJIT_TRY(loaded);
  const LoadedKernel* out = loaded->get();
  table_.emplace(key, std::move(*loaded));
  return out;
}

Expected<LtGemms*> KernelTable::gemms() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!gemms_) {
    auto g = LtGemms::create();
    FFNJIT_TRY(g);
    gemms_ = std::move(*g);
  }
  return gemms_.get();
}

KernelTable::~KernelTable() {
  gemms_.reset();
  auto api = drv::api();
  if (!api) return;
  for (auto& [key, k] : table_) (*api)->cuModuleUnload(k->module);
}

}  // namespace ffnjit
