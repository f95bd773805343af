// What the kernel cache stores: compiled binaries, tuning records, the toolchain
// identity they were made with, and the report of records skipped as unusable.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/status.hpp"

namespace ffnjit::cache {

// What a record was produced with. Records are only usable by the same toolchain:
// a cubin is tied to its arch, NVRTC and generator; a timing also to the GPU and driver.
struct ToolchainIdentity {
  std::string gpu_name;           // "NVIDIA H100 80GB HBM3"
  std::string arch;               // exact target incl. suffix: "sm_90a"
  std::string driver_version;     // format_driver_version(cuDriverGetVersion()): "13.0"
  std::string nvrtc_version;      // "13.0"
  std::string generator_version;  // ffnjit::kGeneratorVersion
};

// The driver_version string for a cuDriverGetVersion() value: 13000 -> "13.0".
// Everything that writes or looks up records formats it this way.
std::string format_driver_version(int cuda_driver_version);

// A compiled kernel, keyed by content (codegen's CompiledKernel::key: the hash of
// source, templates, generator, NVRTC, arch and options). Never by a file path.
// Every record carries what its key is derived from, so binary_key() re-derives it
// and a record whose key or cubin does not match its content is never served.
struct BinaryRecord {
  std::string key;  // 64 lower-case hex digits: binary_key(*this)
  std::string kernel_name;
  std::string lowered_name;  // the symbol to look up in the cubin
  std::string arch;
  std::string generator_version;
  std::string nvrtc_version;
  std::string cubin;           // ELF bytes, never empty
  std::string ptx;             // may be empty
  std::string source;          // the generated CUDA translation unit
  std::string spec;            // KernelSpec::canonical()
  std::string templates_hash;  // codegen's templates_hash() the source was compiled against
  std::string cubin_sha256;    // SHA-256 of cubin (hex); put_binary fills it when empty
  nlohmann::json resources = nlohmann::json::object();  // registers, spills, smem, ...
  nlohmann::json options = nlohmann::json::array();     // NVRTC options, for `show`
  double compile_ms = 0;
  int64_t created_at_ms = 0;  // Unix milliseconds; 0 on put means "now"
};

// The tuner's verdict for one layer and one batch bucket on one toolchain.
struct TuningRecord {
  ToolchainIdentity toolchain;
  std::string ffnjit_version;   // which ffnjit measured it (informational, not identity)
  std::string layer_signature;  // shape, sparsity profile hash, ...: content, never a path
  int64_t bucket_min = 1;       // inclusive token range this winner serves
  int64_t bucket_max = 1;
  // The chosen configuration. By convention it lists the kernels it launches under
  // "kernels" (names, for `ffnjit cache ls --name`) and their binary keys under "keys".
  nlohmann::json winner = nlohmann::json::object();
  nlohmann::json candidates = nlohmann::json::array();  // every candidate: config, time or failure
  std::optional<double> dense_us;                       // absent when untimed
  std::optional<double> winner_us;                      // absent when untimed
  bool untimed = false;       // compile-only tuning (no GPU): a guess, not a measurement
  int64_t created_at_ms = 0;  // Unix milliseconds; 0 on put means "now"

  // The record's identity hash: toolchain + layer signature + bucket. Two records
  // with the same key replace each other.
  std::string key() const;
};

// Why a record was not loaded.
enum class SkipReason { kGpu, kArch, kDriver, kNvrtc, kGenerator, kDamaged };
inline constexpr int kNumSkipReasons = 6;
const char* skip_reason_text(SkipReason r);  // "another NVRTC"

// Counts of records skipped per reason, for the caller to report.
struct SkipReport {
  std::array<int, kNumSkipReasons> counts{};

  void add(SkipReason r) { ++counts[int(r)]; }
  void merge(const SkipReport& o);
  int total() const;
  int count(SkipReason r) const { return counts[int(r)]; }
  // "12 records for another NVRTC, 1 for another GPU; run `ffnjit tune` again or
  // `ffnjit cache gc`"; empty when nothing was skipped.
  std::string message() const;
};

// Records a lookup returned, plus what it skipped.
template <class T>
struct Loaded {
  std::vector<T> records;
  SkipReport skipped;
};

// One record (or none) and what the lookup skipped on the way.
template <class T>
struct Found {
  std::optional<T> record;
  SkipReport skipped;
};

// Why `record` cannot be used by `current`, or nullopt when it can. An empty field
// in `current` means "unknown" and matches anything (e.g. the CLI without a driver
// knows no GPU); the runtime always passes a complete identity.
std::optional<SkipReason> mismatch(const ToolchainIdentity& record,
                                   const ToolchainIdentity& current);
// Binaries depend on arch, NVRTC and generator only.
std::optional<SkipReason> mismatch(const BinaryRecord& record, const ToolchainIdentity& current);

// The content key of a binary, from its stored columns exactly as codegen's
// compile_key() derives it from a Source: SHA-256 of source, templates_hash,
// generator_version, nvrtc_version and the options (which name the arch). A JSON
// `options` that is not an array of strings gives "" (never a valid key).
std::string binary_key(const BinaryRecord& record);

// What makes a record incomplete, malformed or inconsistent ("cubin is empty", "key
// does not match its content", "the cubin defines no function X"); empty when it is
// sound. put_* refuses such records, verify reports them, loads skip them, import
// refuses files holding them. A binary is checked for: every field present, its key
// re-derived from its content, its cubin matching cubin_sha256, and its cubin being a
// CUDA ELF for its arch that defines lowered_name (check_cubin in cache/elf.hpp).
std::vector<std::string> problems(const BinaryRecord& record);
std::vector<std::string> problems(const TuningRecord& record);

// The binary keys a tuning record's winner names under "keys" (the convention of
// TuningRecord::winner); empty when it names none. problems() refuses a "keys" that
// is not an array of 64-hex-digit strings.
std::vector<std::string> winner_keys(const nlohmann::json& winner);

// Why a record as parsed from its row cannot be served: damaged (unparsable or with
// problems), or from another toolchain than `*current` (not checked when null).
// nullopt: usable.
std::optional<SkipReason> unusable(const Expected<BinaryRecord>& r,
                                   const ToolchainIdentity* current);
std::optional<SkipReason> unusable(const Expected<TuningRecord>& r,
                                   const ToolchainIdentity* current);

}  // namespace ffnjit::cache
