// Between the pipeline's types and the cache's records.
#include "runtime/cache_io.hpp"

#include "codegen/version.hpp"

namespace ffnjit {

cache::BinaryRecord to_record(const CompiledKernel& k, const Source& src) {
  cache::BinaryRecord r;
  r.key = k.key;
  r.kernel_name = k.kernel_name;
  r.lowered_name = k.lowered_name;
  r.arch = k.arch;
  r.generator_version = kGeneratorVersion;
  r.nvrtc_version = nvrtc_version();
  r.cubin = k.cubin;
  r.ptx = k.ptx;
  r.source = src.text;
  r.spec = src.spec.canonical();
  r.templates_hash = templates_hash();  // what compile_key() hashed: lets the cache re-derive the key
  const auto& res = k.resources;
  r.resources = {{"registers", res.registers},
                 {"barriers", res.barriers},
                 {"stack_frame_bytes", res.stack_frame_bytes},
                 {"spill_store_bytes", res.spill_store_bytes},
                 {"spill_load_bytes", res.spill_load_bytes},
                 {"static_smem_bytes", res.static_smem_bytes},
                 {"dynamic_smem_bytes", res.dynamic_smem_bytes},
                 {"constant_bytes", res.constant_bytes}};
  r.options = k.options;
  r.compile_ms = k.compile_ms;
  return r;
}

CompiledKernel from_record(const cache::BinaryRecord& r) {
  CompiledKernel k;
  k.kernel_name = r.kernel_name;
  k.lowered_name = r.lowered_name.empty() ? r.kernel_name : r.lowered_name;
  k.arch = r.arch;
  k.cubin = r.cubin;
  k.ptx = r.ptx;
  k.key = r.key;
  k.compile_ms = r.compile_ms;
  auto get = [&](const char* f) { return r.resources.contains(f) ? r.resources[f].get<int>() : 0; };
  k.resources.registers = r.resources.contains("registers") ? r.resources["registers"].get<int>() : -1;
  k.resources.barriers = get("barriers");
  k.resources.stack_frame_bytes = get("stack_frame_bytes");
  k.resources.spill_store_bytes = get("spill_store_bytes");
  k.resources.spill_load_bytes = get("spill_load_bytes");
  k.resources.static_smem_bytes = get("static_smem_bytes");
  k.resources.dynamic_smem_bytes = get("dynamic_smem_bytes");
  k.resources.constant_bytes = get("constant_bytes");
  return k;
}

cache::ToolchainIdentity toolchain_identity(const DeviceInfo& info) {
  return {info.name, info.arch, cache::format_driver_version(info.driver_version), nvrtc_version(),
          kGeneratorVersion};
}

cache::ToolchainIdentity compile_only_identity(Arch arch) {
  return {"", arch_name(arch), "", nvrtc_version(), kGeneratorVersion};
}

}  // namespace ffnjit
