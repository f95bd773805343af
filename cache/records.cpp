// Cache records: identity hashing, usability against a toolchain, skip reports.
#include "cache/records.hpp"

#include "cache/elf.hpp"
#include "support/hash.hpp"

namespace ffnjit::cache {

std::string format_driver_version(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

std::string TuningRecord::key() const {
  // Fields are NUL-separated so that no two different tuples hash the same text.
  Sha256 h;
  auto field = [&h](std::string_view s) { h.update(s).update("\0", 1); };
  field("ffnjit-tuning-v1");
  field(toolchain.gpu_name);
  field(toolchain.arch);
  field(toolchain.driver_version);
  field(toolchain.nvrtc_version);
  field(toolchain.generator_version);
  field(layer_signature);
  field(std::to_string(bucket_min));
  field(std::to_string(bucket_max));
  return h.hex_digest();
}

const char* skip_reason_text(SkipReason r) {
  switch (r) {
    case SkipReason::kGpu:
      return "another GPU";
    case SkipReason::kArch:
      return "another arch";
    case SkipReason::kDriver:
      return "another driver";
    case SkipReason::kNvrtc:
      return "another NVRTC";
    case SkipReason::kGenerator:
      return "another generator version";
    case SkipReason::kDamaged:
      return "damaged";
  }
  return "?";
}

void SkipReport::merge(const SkipReport& o) {
  for (int i = 0; i < kNumSkipReasons; ++i) counts[i] += o.counts[i];
}

int SkipReport::total() const {
  int n = 0;
  for (int c : counts) n += c;
  return n;
}

std::string SkipReport::message() const {
  std::string out;
  bool toolchain = false;
  for (int i = 0; i < kNumSkipReasons; ++i) {
    int n = counts[i];
    if (!n) continue;
    auto r = SkipReason(i);
    if (!out.empty()) out += ", ";
    if (r == SkipReason::kDamaged) {
      out += std::to_string(n) + (n == 1 ? " damaged record" : " damaged records");
    } else {
      // "12 records for another NVRTC", then "1 for another GPU" after the first.
      out += std::to_string(n) + (out.empty() ? (n == 1 ? " record" : " records") : "") + " for " +
             skip_reason_text(r);
      toolchain = true;
    }
  }
  if (out.empty()) return out;
  if (toolchain) out += "; run `ffnjit tune` again or `ffnjit cache gc`";
  if (count(SkipReason::kDamaged)) out += "; `ffnjit cache verify` lists damaged records";
  return out;
}

namespace {
// Two fields conflict only when both are known and differ.
bool differs(const std::string& a, const std::string& b) {
  return !a.empty() && !b.empty() && a != b;
}
}  // namespace

std::optional<SkipReason> mismatch(const ToolchainIdentity& rec, const ToolchainIdentity& cur) {
  if (differs(rec.gpu_name, cur.gpu_name)) return SkipReason::kGpu;
  if (differs(rec.arch, cur.arch)) return SkipReason::kArch;
  if (differs(rec.driver_version, cur.driver_version)) return SkipReason::kDriver;
  if (differs(rec.nvrtc_version, cur.nvrtc_version)) return SkipReason::kNvrtc;
  if (differs(rec.generator_version, cur.generator_version)) return SkipReason::kGenerator;
  return std::nullopt;
}

std::optional<SkipReason> mismatch(const BinaryRecord& rec, const ToolchainIdentity& cur) {
  return mismatch(ToolchainIdentity{"", rec.arch, "", rec.nvrtc_version, rec.generator_version},
                  cur);
}

std::optional<SkipReason> unusable(const Expected<BinaryRecord>& r,
                                   const ToolchainIdentity* current) {
  if (!r || !problems(*r).empty()) return SkipReason::kDamaged;
  return current ? mismatch(*r, *current) : std::nullopt;
}

std::optional<SkipReason> unusable(const Expected<TuningRecord>& r,
                                   const ToolchainIdentity* current) {
  if (!r || !problems(*r).empty()) return SkipReason::kDamaged;
  return current ? mismatch(r->toolchain, *current) : std::nullopt;
}

namespace {
bool is_hex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}
}  // namespace

std::string binary_key(const BinaryRecord& r) {
  // Mirrors codegen's compile_key(); tests/unit/test_cache_key.cpp holds the two together.
  if (!r.options.is_array()) return "";
  std::string options;
  for (const auto& o : r.options) {
    if (!o.is_string()) return "";
    if (!options.empty()) options += ' ';
    options += o.get<std::string>();
  }
  Sha256 key;
  key.update(r.source)
      .update("\n")
      .update(r.templates_hash)
      .update("\n")
      .update(r.generator_version);
  key.update("\nnvrtc=").update(r.nvrtc_version).update("\n").update(options);
  return key.hex_digest();
}

std::vector<std::string> problems(const BinaryRecord& r) {
  std::vector<std::string> p;
  if (!is_hex64(r.key)) p.push_back("key is not 64 lower-case hex digits (a SHA-256)");
  if (r.kernel_name.empty()) p.push_back("kernel_name is empty");
  if (r.lowered_name.empty()) p.push_back("lowered_name is empty");
  if (r.arch.empty()) p.push_back("arch is empty");
  if (r.generator_version.empty()) p.push_back("generator_version is empty");
  if (r.nvrtc_version.empty()) p.push_back("nvrtc_version is empty");
  if (r.templates_hash.empty()) p.push_back("templates_hash is empty");
  if (r.source.empty()) p.push_back("source is empty");
  if (r.spec.empty()) p.push_back("spec is empty");
  if (!r.resources.is_object()) p.push_back("resources is not a JSON object");
  if (!r.options.is_array()) p.push_back("options is not a JSON array");
  if (!(r.compile_ms >= 0)) p.push_back("compile_ms is negative");
  if (!p.empty()) return p;  // the checks below need every field
  // The options name the target: a record whose arch column says otherwise was edited.
  bool arch_option = false;
  for (const auto& o : r.options) arch_option = arch_option || o == "-arch=" + r.arch;
  if (!arch_option) p.push_back("options do not compile for its arch " + r.arch);
  if (binary_key(r) != r.key)
    p.push_back("key does not match its content (source, templates, generator, NVRTC, options)");
  if (r.cubin.empty()) {
    p.push_back("cubin is empty");
  } else {
    if (r.cubin_sha256 != sha256_hex(r.cubin))
      p.push_back("cubin does not match its SHA-256 digest");
    if (Status s = check_cubin(r.cubin, r.arch, r.lowered_name); !s) p.push_back(s.message());
  }
  return p;
}

std::vector<std::string> winner_keys(const nlohmann::json& winner) {
  std::vector<std::string> out;
  if (!winner.is_object()) return out;
  auto it = winner.find("keys");
  if (it == winner.end() || !it->is_array()) return out;
  for (const auto& k : *it)
    if (k.is_string()) out.push_back(k.get<std::string>());
  return out;
}

std::vector<std::string> problems(const TuningRecord& r) {
  std::vector<std::string> p;
  const ToolchainIdentity& t = r.toolchain;
  // Compile-only tuning runs without a GPU, so only measured records must name one.
  if (!r.untimed && t.gpu_name.empty()) p.push_back("gpu_name is empty on a timed record");
  if (!r.untimed && t.driver_version.empty())
    p.push_back("driver_version is empty on a timed record");
  if (t.arch.empty()) p.push_back("arch is empty");
  if (t.nvrtc_version.empty()) p.push_back("nvrtc_version is empty");
  if (t.generator_version.empty()) p.push_back("generator_version is empty");
  if (r.layer_signature.empty()) p.push_back("layer_signature is empty");
  if (r.bucket_min < 1 || r.bucket_max < r.bucket_min)
    p.push_back("bucket [" + std::to_string(r.bucket_min) + ", " + std::to_string(r.bucket_max) +
                "] is not a range of token counts >= 1");
  if (!r.winner.is_object() || r.winner.empty())
    p.push_back("winner is not a non-empty JSON object");
  if (!r.candidates.is_array()) p.push_back("candidates is not a JSON array");
  if (r.winner.is_object())
    if (auto it = r.winner.find("keys"); it != r.winner.end()) {
      bool ok = it->is_array();
      if (ok)
        for (const auto& k : *it) ok = ok && k.is_string() && is_hex64(k.get<std::string>());
      if (!ok) p.push_back("winner's \"keys\" is not an array of binary keys (64 hex digits)");
    }
  if (!r.untimed && (!r.winner_us || !r.dense_us))
    p.push_back("a timed record lacks winner_us or dense_us");
  return p;
}

}  // namespace ffnjit::cache
