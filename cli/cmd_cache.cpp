// `ffnjit cache`: list, show, export, import, merge, gc and verify the kernel cache.
#include <cuda.h>

#include <cctype>
#include <cstdio>
#include <ctime>
#include <set>

#include "cache/cache.hpp"
#include "cache/location.hpp"
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "codegen/compile.hpp"
#include "codegen/source.hpp"
#include "codegen/version.hpp"
#include "runtime/device.hpp"
#include "runtime/driver.hpp"
#include "support/strings.hpp"

namespace ffnjit::cli {
namespace {

using cache::BinaryRecord;
using cache::Cache;
using cache::TuningRecord;

const char* const kUsage =
    "usage: ffnjit cache <subcommand> [options]\n\n"
    "Inspects and maintains the kernel cache (compiled binaries and tuning records).\n"
    "Every subcommand takes --cache PATH; without it the cache is $FFNJIT_CACHE, else\n"
    "$XDG_CACHE_HOME/ffnjit/cache.db, else ~/.cache/ffnjit/cache.db. Its directory must be\n"
    "yours (or root's) and writable by you alone (docs/cache.md).\n\n"
    "subcommands:\n"
    "  ls                 table of records (--layer, --arch, --name filters)\n"
    "  show <key|name>    one record (--source, --ptx print those)\n"
    "  export <file>      write a portable single-file copy (e.g. to ship with a model)\n"
    "  import <file>      add the records of an exported file (verified: rebuilt with NVRTC)\n"
    "  merge <other.db>   combine another cache (e.g. tuned on another machine) into this one\n"
    "  gc                 drop records this toolchain cannot use (--older-than DAYS: also old "
    "ones)\n"
    "  verify             integrity check, every record complete, every cubin loads\n\n"
    "run `ffnjit cache <subcommand> --help` for its options\n";

int fail(const std::string& message, int code = 1) {
  return report_error("cache", message, code);
}

std::string short_key(const std::string& key) {
  return key.substr(0, 12);
}

std::string when(int64_t ms) {
  std::time_t t = std::time_t(ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
  return buf;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string json_int(const nlohmann::json& j, const char* field) {
  auto it = j.find(field);
  return it != j.end() && it->is_number() ? std::to_string(it->get<long long>()) : "-";
}

// Prints rows with columns padded to their widest cell; the last column is not padded.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  for (const auto& r : rows) {
    std::string line = " ";
    for (size_t i = 0; i < r.size(); ++i) {
      line += " " + r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size(), ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

// The first GPU, if this machine has a driver and one; otherwise why not.
struct Gpu {
  std::optional<Device> device;
  std::string why_not;
};

Gpu open_gpu() {
  Gpu g;
  auto d = Device::open(0);
  if (d)
    g.device.emplace(std::move(*d));
  else
    g.why_not = d.error().message;
  return g;
}

// The toolchain this process would load records with. Without a GPU the GPU, arch
// and driver fields stay empty, which matches any record.
cache::ToolchainIdentity current_identity(const Gpu& gpu) {
  cache::ToolchainIdentity id;
  id.nvrtc_version = nvrtc_version();
  id.generator_version = kGeneratorVersion;
  if (gpu.device) {
    const DeviceInfo& info = gpu.device->info();
    id.gpu_name = info.name;
    id.arch = info.arch;
    id.driver_version = cache::format_driver_version(info.driver_version);
  }
  return id;
}

Expected<Cache> open_cache(const Args& args, bool write, bool create = false) {
  // An explicit --cache "" is an error, never the default cache.
  auto path = cache::resolve_cache_path(args.has("cache") ? args.get("cache").c_str() : nullptr);
  if (!path) return path.error();
  return Cache::open(*path, {.read_only = !write, .create_if_missing = create});
}

bool has_option(const nlohmann::json& options, const std::string& o) {
  for (const auto& x : options)
    if (x == o) return true;
  return false;
}

// Rebuilds a binary from its stored source with this build's NVRTC and compares the
// cubin byte for byte (NVRTC is deterministic for the same source, options and
// version). With the key re-derived from the source (problems()), a match proves the
// cubin is exactly what this build would compile for that key itself. Records of
// another NVRTC, generator or template set cannot be rebuilt here: false.
Expected<bool> rebuild_check(const BinaryRecord& r) {
  if (r.nvrtc_version != nvrtc_version() || r.generator_version != kGeneratorVersion ||
      r.templates_hash != templates_hash())
    return false;
  auto arch = parse_arch(r.arch);
  if (!arch) return false;
  Source src;
  src.text = r.source;
  src.kernel_name = r.kernel_name;
  src.spec.arch = *arch;
  CompileOptions co;
  co.line_info = has_option(r.options, "-lineinfo");
  if (nlohmann::json(compile_options(src, co)) != r.options)
    return false;  // never this build's key
  auto k = compile(src, co);
  if (!k) {
    std::string first = k.error().message.substr(0, k.error().message.find('\n'));
    return Error{ErrorKind::kInvalidArgument,
                 "its source does not compile with NVRTC " + nvrtc_version() + " (" + first + ")"};
  }
  if (k->cubin != r.cubin)
    return Error{ErrorKind::kInvalidArgument,
                 "its cubin (" + std::to_string(r.cubin.size()) +
                     " bytes) is not what NVRTC builds from its source (" +
                     std::to_string(k->cubin.size()) + " bytes)"};
  return true;
}

void add_cache_option(Args& args) {
  args.option("cache", "PATH",
              "cache database (default: $FFNJIT_CACHE, else $XDG_CACHE_HOME/ffnjit/cache.db)");
}

// Parses; returns -1 to go on, else the exit code (help printed or usage error).
int parse(Args& args, const Argv& argv) {
  if (auto s = args.parse(argv); !s) return fail(s.message(), 2);
  if (args.help_requested()) return std::printf("%s", args.help().c_str()), 0;
  return -1;
}

// --- ls ----------------------------------------------------------------------

int cache_ls(const Argv& argv) {
  Args args("cache ls", "Lists the compiled binaries and tuning records in the cache.");
  add_cache_option(args);
  args.option("layer", "GLOB",
              "only tuning records whose layer signature matches (and their kernels)");
  args.option("arch", "ARCH", "only records for this arch, e.g. sm_90a");
  args.option("name", "GLOB", "only kernels whose name matches, e.g. 'ffnjit_gate_*'");
  if (int rc = parse(args, argv); rc >= 0) return rc;
  auto c = open_cache(args, false);
  if (!c) return fail(c.error().message);

  cache::ListFilter f;
  f.layer = args.get("layer");
  f.arch = args.get("arch");
  f.name = args.get("name");
  f.with_payload = false;
  auto tunings = c->list_tunings(f);
  if (!tunings) return fail(tunings.error().message);
  auto binaries = c->list_binaries(f);
  if (!binaries) return fail(binaries.error().message);
  if (!f.layer.empty()) {
    // Binaries have no layer: keep those the listed winners launch.
    std::set<std::string> used;
    for (const auto& t : *tunings)
      for (const char* field : {"kernels", "keys"})
        if (auto it = t.winner.find(field); it != t.winner.end() && it->is_array())
          for (const auto& k : *it)
            if (k.is_string()) used.insert(k.get<std::string>());
    std::erase_if(*binaries, [&](const BinaryRecord& b) {
      return !used.count(b.kernel_name) && !used.count(b.key);
    });
  }

  std::printf("cache: %s (schema v%d)\n\nbinaries: %zu\n", c->path().c_str(), c->schema_version(),
              binaries->size());
  if (!binaries->empty()) {
    std::vector<std::vector<std::string>> rows = {
        {"KEY", "ARCH", "NVRTC", "GEN", "REGS", "SPILL", "COMPILE", "CREATED", "KERNEL"}};
    for (const auto& b : *binaries) {
      long long spill = 0;
      for (const char* s : {"spill_store_bytes", "spill_load_bytes"})
        if (auto it = b.resources.find(s); it != b.resources.end() && it->is_number())
          spill += it->get<long long>();
      rows.push_back({short_key(b.key), b.arch, b.nvrtc_version, b.generator_version,
                      json_int(b.resources, "registers"), std::to_string(spill),
                      fmt("%.0f ms", b.compile_ms), when(b.created_at_ms), b.kernel_name});
    }
    print_table(rows);
  }
  std::printf("\ntuning records: %zu\n", tunings->size());
  if (!tunings->empty()) {
    std::vector<std::vector<std::string>> rows = {
        {"KEY", "TOKENS", "ARCH", "DRIVER", "NVRTC", "WINNER", "DENSE", "SPEEDUP", "GPU", "LAYER"}};
    for (const auto& t : *tunings) {
      std::string tokens = std::to_string(t.bucket_min) + "-" + std::to_string(t.bucket_max);
      std::string win = t.untimed ? "untimed" : fmt("%.1f us", t.winner_us.value_or(0));
      std::string dense = t.dense_us ? fmt("%.1f us", *t.dense_us) : "-";
      std::string speedup = t.dense_us && t.winner_us && *t.winner_us > 0
                                ? fmt("%.2fx", *t.dense_us / *t.winner_us)
                                : "-";
      rows.push_back({short_key(t.key()), tokens, t.toolchain.arch, t.toolchain.driver_version,
                      t.toolchain.nvrtc_version, win, dense, speedup,
                      t.toolchain.gpu_name.empty() ? "-" : t.toolchain.gpu_name,
                      t.layer_signature});
    }
    print_table(rows);
  }
  return 0;
}

// --- show ----------------------------------------------------------------------

void show_binary(const BinaryRecord& b) {
  std::printf("binary %s\n", b.key.c_str());
  std::printf("  kernel:        %s\n  symbol:        %s\n", b.kernel_name.c_str(),
              b.lowered_name.c_str());
  std::printf("  arch:          %s\n  NVRTC:         %s\n  generator:     %s\n", b.arch.c_str(),
              b.nvrtc_version.c_str(), b.generator_version.c_str());
  std::printf("  created:       %s\n  compile time:  %.0f ms\n", when(b.created_at_ms).c_str(),
              b.compile_ms);
  std::printf("  cubin:         %zu bytes\n  PTX:           %s\n  source:        %zu bytes\n",
              b.cubin.size(),
              b.ptx.empty() ? "not kept" : (std::to_string(b.ptx.size()) + " bytes").c_str(),
              b.source.size());
  std::printf("  spec:          %s\n  options:       %s\n", b.spec.c_str(),
              b.options.dump().c_str());
  std::printf("  resources:     %s\n", b.resources.dump().c_str());
  std::printf("(--source and --ptx print the CUDA source and the PTX)\n");
}

void show_tuning(const TuningRecord& t) {
  std::printf("tuning record %s\n", t.key().c_str());
  std::printf("  layer:         %s\n  tokens:        %lld-%lld\n", t.layer_signature.c_str(),
              (long long)t.bucket_min, (long long)t.bucket_max);
  std::printf(
      "  GPU:           %s\n  arch:          %s\n  driver:        %s\n  NVRTC:         %s\n",
      t.toolchain.gpu_name.c_str(), t.toolchain.arch.c_str(), t.toolchain.driver_version.c_str(),
      t.toolchain.nvrtc_version.c_str());
  std::printf("  generator:     %s\n  tuned by:      ffnjit %s\n  created:       %s\n",
              t.toolchain.generator_version.c_str(), t.ffnjit_version.c_str(),
              when(t.created_at_ms).c_str());
  if (t.untimed) {
    std::printf("  timing:        untimed (compile-only tuning)\n");
  } else {
    std::printf("  winner time:   %.2f us\n  dense time:    %.2f us\n  speedup:       %.2fx\n",
                t.winner_us.value_or(0), t.dense_us.value_or(0),
                t.winner_us.value_or(0) > 0 ? t.dense_us.value_or(0) / *t.winner_us : 0.0);
  }
  std::printf("  winner:\n%s\n  candidates:\n%s\n", t.winner.dump(2).c_str(),
              t.candidates.dump(2).c_str());
}

int cache_show(const Argv& argv) {
  Args args("cache show",
            "Prints one record: a binary by key, key prefix or kernel name, or a tuning\n"
            "record by key or key prefix (as `ffnjit cache ls` prints them).");
  add_cache_option(args);
  args.positional("key-or-name", "a record key (or its first 6+ hex digits) or a kernel name");
  args.flag("source", "print only the binary's generated CUDA source");
  args.flag("ptx", "print only the binary's PTX");
  if (int rc = parse(args, argv); rc >= 0) return rc;
  if (args.has("source") && args.has("ptx"))
    return fail("pass either --source or --ptx, not both", 2);
  auto c = open_cache(args, false);
  if (!c) return fail(c.error().message);

  std::string what = args.get("key-or-name");
  std::string lower = what;
  for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  bool hex = lower.size() >= 6 && lower.find_first_not_of("0123456789abcdef") == std::string::npos;
  std::optional<BinaryRecord> binary;
  std::optional<TuningRecord> tuning;
  if (hex) {
    auto keys = c->keys_with_prefix(lower);
    if (!keys) return fail(keys.error().message);
    if (keys->size() > 1)
      return fail("key prefix '" + what + "' matches " + std::to_string(keys->size()) +
                  " records; give more digits of the key");
    if (keys->size() == 1) {
      auto b = c->get_binary((*keys)[0]);
      if (!b) return fail(b.error().message);
      binary = std::move(*b);
      if (!binary) {
        auto t = c->get_tuning((*keys)[0]);
        if (!t) return fail(t.error().message);
        tuning = std::move(*t);
      }
    }
  }
  if (!binary && !tuning) {
    cache::ListFilter f;
    f.name = what;
    auto named = c->list_binaries(f);
    if (!named) return fail(named.error().message);
    if (named->size() > 1) {
      std::vector<std::string> keys;
      for (const auto& b : *named) keys.push_back(short_key(b.key));
      return fail("'" + what + "' names " + std::to_string(named->size()) + " binaries (keys " +
                  join(keys, ", ") + "); pass one of the keys");
    }
    if (named->empty())
      return fail("no record with key or kernel name '" + what + "' in " + c->path() +
                  "; `ffnjit cache ls` lists them");
    binary = std::move((*named)[0]);
  }
  if (tuning) {
    if (args.has("source") || args.has("ptx"))
      return fail("--source and --ptx apply to binaries; " + short_key(tuning->key()) +
                      " is a tuning record (`ffnjit cache show` a kernel key from its winner)",
                  2);
    show_tuning(*tuning);
    return 0;
  }
  if (args.has("source")) {
    std::fwrite(binary->source.data(), 1, binary->source.size(), stdout);
  } else if (args.has("ptx")) {
    if (binary->ptx.empty())
      return fail("no PTX was kept for " + binary->kernel_name +
                  "; regenerate it with `ffnjit inspect ... --emit ptx`");
    std::fwrite(binary->ptx.data(), 1, binary->ptx.size(), stdout);
  } else {
    show_binary(*binary);
  }
  return 0;
}

// --- export / import / merge -------------------------------------------------------

int cache_export(const Argv& argv) {
  Args args("cache export",
            "Writes every record to FILE, a new self-contained SQLite file with the\n"
            "cache schema (ship it with a model; `ffnjit cache import` reads it).");
  add_cache_option(args);
  args.positional("file", "the file to create (never overwritten)");
  if (int rc = parse(args, argv); rc >= 0) return rc;
  auto c = open_cache(args, false);
  if (!c) return fail(c.error().message);
  if (auto s = c->export_to(args.get("file")); !s) return fail(s.message());
  cache::ListFilter light;
  light.with_payload = false;
  auto b = c->list_binaries(light);
  auto t = c->list_tunings(light);
  std::printf("exported %zu binaries and %zu tuning records to %s\n", b ? b->size() : 0,
              t ? t->size() : 0, args.get("file").c_str());
  return 0;
}

int merge_like(const std::string& sub, const std::string& help, const Argv& argv) {
  Args args("cache " + sub, help);
  add_cache_option(args);
  args.positional(
      "file", sub == "import" ? "a file written by `ffnjit cache export`" : "another cache file");
  args.flag("no-rebuild",
            "do not rebuild the binaries with NVRTC to compare their cubins (their keys, digests "
            "and ELF images are still checked); only for files from a source you trust");
  if (int rc = parse(args, argv); rc >= 0) return rc;
  auto c = open_cache(args, true, true);
  if (!c) return fail(c.error().message);
  cache::MergeOptions mo;
  if (!args.has("no-rebuild")) mo.check_binary = rebuild_check;
  const std::string file = args.get("file");
  auto r = c->merge_from(file, mo);
  if (!r) return fail(r.error().message);
  std::printf(
      "%s %s into %s: binaries %d added, %d already present; tuning records %d added, %d replaced "
      "by newer, %d kept (newer here)\n",
      sub == "import" ? "imported" : "merged", file.c_str(), c->path().c_str(), r->binaries_added,
      r->binaries_present, r->tunings_added, r->tunings_replaced, r->tunings_kept);
  if (mo.check_binary)
    std::printf("verified %d binaries by rebuilding them with NVRTC %s\n", r->binaries_rebuilt,
                nvrtc_version().c_str());
  if (r->binaries_unverifiable)
    std::printf(
        "left out %d binaries and %d tuning records made with another NVRTC, generator or template "
        "set: this build cannot rebuild them to verify them (import them with the ffnjit that made "
        "them)\n",
        r->binaries_unverifiable, r->tunings_unverifiable);
  if (r->tunings_missing_binaries)
    std::printf(
        "%d tuning records use kernels that neither %s nor this cache holds; a compile-on-miss "
        "runtime "
        "compiles them\n",
        r->tunings_missing_binaries, file.c_str());
  return 0;
}

// --- gc / verify --------------------------------------------------------------------

int cache_gc(const Argv& argv) {
  Args args("cache gc",
            "Drops records this toolchain cannot use (another NVRTC, generator, GPU, arch or\n"
            "driver) and damaged ones; with --older-than, also records older than DAYS.");
  add_cache_option(args);
  args.option("older-than", "DAYS", "also drop records created more than DAYS days ago");
  if (int rc = parse(args, argv); rc >= 0) return rc;
  cache::GcOptions o;
  if (args.has("older-than")) {
    auto days = args.get_int("older-than", 0, 100000);
    if (!days) return fail(days.error().message, 2);
    o.older_than_days = *days;
  }
  auto c = open_cache(args, true);
  if (!c) return fail(c.error().message);
  Gpu gpu = open_gpu();
  o.unusable_for = current_identity(gpu);
  if (!gpu.device)
    std::printf("GPU, arch and driver checks skipped (%s); records for other GPUs are kept\n",
                gpu.why_not.c_str());
  auto r = c->gc(o);
  if (!r) return fail(r.error().message);
  std::printf("removed %d binaries and %d tuning records from %s", r->binaries_removed,
              r->tunings_removed, c->path().c_str());
  std::vector<std::string> why;
  for (int i = 0; i < cache::kNumSkipReasons; ++i)
    if (int n = r->unusable.counts[i])
      why.push_back(std::to_string(n) + " " + cache::skip_reason_text(cache::SkipReason(i)));
  if (r->too_old) why.push_back(std::to_string(r->too_old) + " too old");
  std::printf("%s\n", why.empty() ? "" : (" (" + join(why, ", ") + ")").c_str());
  return 0;
}

// Loads each cubin into the GPU's primary context (cuModuleLoadData) and looks up
// its symbol. Records for another arch cannot load here: not applicable.
Expected<bool> load_check(const Device& dev, const BinaryRecord& r) {
  if (r.arch != dev.info().arch) return false;
  FFNJIT_TRY(dev.make_current());
  const drv::Api* cu = dev.api();
  CUmodule mod = nullptr;
  FFNJIT_CU(cuModuleLoadData(&mod, r.cubin.data()));
  CUfunction fn = nullptr;
  CUresult found = cu->cuModuleGetFunction(&fn, mod, r.lowered_name.c_str());
  cu->cuModuleUnload(mod);
  if (found != CUDA_SUCCESS)
    return Error{ErrorKind::kDriver, "the cubin has no symbol " + r.lowered_name + " (" +
                                         drv::result_name(found) + ")"};
  return true;
}

int cache_verify(const Argv& argv) {
  Args args("cache verify",
            "Runs SQLite's integrity check, checks that every record is complete (cubin\n"
            "present, JSON parses, keys consistent) and loads every cubin on the GPU.");
  add_cache_option(args);
  args.flag("rebuild",
            "also rebuild every binary with NVRTC and compare its cubin byte for byte (what "
            "`ffnjit cache import` does; about 0.3 s per binary)");
  if (int rc = parse(args, argv); rc >= 0) return rc;
  auto c = open_cache(args, false);
  if (!c) return fail(c.error().message);

  cache::VerifyOptions o;
  if (args.has("rebuild")) o.rebuild_check = rebuild_check;
  Gpu gpu = open_gpu();
  if (gpu.device)
    o.load_check = [&gpu](const BinaryRecord& r) { return load_check(*gpu.device, r); };
  auto r = c->verify(o);
  if (!r) return fail(r.error().message);
  std::printf("cache: %s\nintegrity_check: %s\nbinaries: %d\ntuning records: %d\n",
              c->path().c_str(), r->integrity.c_str(), r->binaries, r->tunings);
  if (gpu.device)
    std::printf("cubins loaded: %d on %s (%s; %d for other archs not loaded)\n", r->cubins_loaded,
                gpu.device->info().name.c_str(), gpu.device->info().arch.c_str(),
                r->cubins_not_applicable);
  else
    std::printf("cubin load check skipped: %s\n", gpu.why_not.c_str());
  if (o.rebuild_check)
    std::printf("rebuilt with NVRTC %s: %d identical (%d made by another toolchain, not rebuilt)\n",
                nvrtc_version().c_str(), r->rebuilt, r->not_rebuildable);
  if (!r->missing_binaries.empty())
    std::printf(
        "note: %zu tuning records use kernels not in the cache (a compile-on-miss runtime compiles "
        "them; a cache-only one misses them), e.g. %s %s\n",
        r->missing_binaries.size(), short_key(r->missing_binaries[0].key).c_str(),
        r->missing_binaries[0].problem.c_str());
  for (const auto& i : r->issues)
    std::printf("  %s %s %s: %s\n", i.kind.c_str(), short_key(i.key).c_str(), i.label.c_str(),
                i.problem.c_str());
  if (r->integrity != "ok")
    return fail(c->path() + " fails SQLite's integrity check (" + r->integrity +
                "); ffnjit will not repair it: move it away and tune again, or try `sqlite3 " +
                c->path() + " .recover`");
  if (!r->issues.empty())
    return fail(std::to_string(r->issues.size()) + " problem(s) with records in " + c->path() +
                "; `ffnjit cache gc` drops damaged records (never load a cache whose cubins were "
                "tampered with: if you did not edit it, find out who did)");
  std::printf("ok\n");
  return 0;
}

}  // namespace

int cmd_cache(const Argv& argv) {
  if (argv.empty()) return std::fprintf(stderr, "%s", kUsage), 2;
  const std::string sub = argv[0];
  const Argv rest(argv.begin() + 1, argv.end());
  if (sub == "--help" || sub == "-h" || sub == "help") return std::printf("%s", kUsage), 0;
  if (sub == "ls") return cache_ls(rest);
  if (sub == "show") return cache_show(rest);
  if (sub == "export") return cache_export(rest);
  if (sub == "import")
    return merge_like("import",
                      "Adds the records of FILE (written by `ffnjit cache export`) to the cache;\n"
                      "binaries already present are kept, newer tuning records win.",
                      rest);
  if (sub == "merge")
    return merge_like("merge",
                      "Combines another cache file (e.g. tuned on another machine) into this one;\n"
                      "binaries already present are kept, newer tuning records win. The other\n"
                      "file is only read.",
                      rest);
  if (sub == "gc") return cache_gc(rest);
  if (sub == "verify") return cache_verify(rest);
  return fail("unknown subcommand '" + sub + "'; run `ffnjit cache --help`", 2);
}

}  // namespace ffnjit::cli
