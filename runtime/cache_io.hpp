// Between the pipeline's types and the cache's records: compiled kernels as binary
// records (and back) and the toolchain identity of a device.
#pragma once

#include "cache/records.hpp"
#include "codegen/compile.hpp"
#include "runtime/device.hpp"

namespace ffnjit {

cache::BinaryRecord to_record(const CompiledKernel& k, const Source& src);
CompiledKernel from_record(const cache::BinaryRecord& r);

// The identity records are stored under and looked up with on this device.
cache::ToolchainIdentity toolchain_identity(const DeviceInfo& info);
// Without a GPU (compile-only): arch, NVRTC and generator; GPU and driver unknown.
cache::ToolchainIdentity compile_only_identity(Arch arch);

}  // namespace ffnjit
