// Holds the cache's key derivation (cache::binary_key, from stored columns) and
// codegen's (compile_key, from a Source) together, and checks check_cubin() against
// real NVRTC output for every arch ffnjit targets (NVRTC only; no GPU).
#include <catch2/catch.hpp>

#include "cache/elf.hpp"
#include "cache/records.hpp"
#include "codegen/compile.hpp"
#include "codegen/kernel_spec.hpp"
#include "codegen/source.hpp"
#include "runtime/cache_io.hpp"
#include "support/hash.hpp"
#include "tests/cache/cache_test_util.hpp"

using namespace ffnjit;

namespace {

Source source_for(Family family, Arch arch) {
  LayerShape layer{512, 1536, true, DType::kBF16};
  auto src = generate_source(default_spec(family, layer, arch, {1, 16}));
  INFO((src ? "" : src.error().message));
  REQUIRE(src);
  return *src;
}

}  // namespace

TEST_CASE("binary_key re-derives codegen's compile_key from what to_record stores") {
  for (Arch arch : {Arch::kSm80, Arch::kSm89, Arch::kSm90a})
    for (Family family : {Family::kGatePack, Family::kUpDown, Family::kPack})
      for (bool line_info : {false, true}) {
        const Source src = source_for(family, arch);
        CompileOptions opts;
        opts.line_info = line_info;
        CompiledKernel k;
        k.kernel_name = k.lowered_name = src.kernel_name;
        k.arch = arch_name(arch);
        k.options = compile_options(src, opts);
        k.key = compile_key(src, opts);
        k.cubin = cache::testing::make_cubin(k.arch, k.lowered_name, "code");
        cache::BinaryRecord r = to_record(k, src);
        INFO(k.kernel_name << " line_info=" << line_info);
        CHECK(cache::binary_key(r) == k.key);
        r.cubin_sha256 = sha256_hex(r.cubin);
        CHECK(cache::problems(r).empty());
        // Any change to what the key covers is detected.
        cache::BinaryRecord edited = r;
        edited.source += " ";
        CHECK(cache::binary_key(edited) != k.key);
        edited = r;
        edited.templates_hash = "ffffffffffffffff";
        CHECK(cache::binary_key(edited) != k.key);
      }
}

TEST_CASE("check_cubin accepts real NVRTC cubins for their arch and symbol only") {
  for (Arch arch : {Arch::kSm80, Arch::kSm89, Arch::kSm90a}) {
    const Source src = source_for(Family::kPack, arch);
    auto k = compile(src);
    INFO((k ? "" : k.error().message));
    REQUIRE(k);
    INFO(k->kernel_name);
    Status ok = cache::check_cubin(k->cubin, arch_name(arch), k->lowered_name);
    INFO((ok ? "" : ok.message()));
    CHECK(ok);
    CHECK_FALSE(
        cache::check_cubin(k->cubin, arch == Arch::kSm80 ? "sm_90a" : "sm_80", k->lowered_name));
    CHECK_FALSE(cache::check_cubin(k->cubin, arch_name(arch), k->lowered_name + "x"));
    cache::BinaryRecord r = to_record(*k, src);
    r.cubin_sha256 = sha256_hex(r.cubin);
    CHECK(cache::problems(r).empty());
  }
}
