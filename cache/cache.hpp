// The kernel cache: one SQLite file holding compiled binaries and tuning records,
// shared safely by many processes, refusing files it does not recognize as its own.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cache/records.hpp"
#include "support/status.hpp"

namespace ffnjit::cache {

inline constexpr uint32_t kApplicationId = 0x46464E4A;  // "FFNJ" in the SQLite header
inline constexpr int kSchemaVersion = 2;                // PRAGMA user_version this build writes

struct OpenOptions {
  bool read_only = false;         // never writes; never creates the file or its directory
  bool create_if_missing = true;  // ignored when read_only
  int busy_timeout_ms = 10000;    // how long to wait for another process's write lock
  // A file that is only read and whose records are verified before use (the other
  // file of import and merge): implies read_only, skips the owner and mode checks of
  // check_location (cache/location.hpp), and never uses a read-write connection.
  bool untrusted = false;
};

// Filters for list and load. Empty fields match everything.
struct ListFilter {
  std::string layer;  // glob on the layer signature (no * or ? = substring); tuning records only
  std::string arch;   // exact arch ("sm_90a")
  std::string name;   // glob on the kernel name (binaries) or the winner's "kernels" (tuning)
  bool with_payload = true;  // binaries: false leaves cubin, ptx and source empty (for `ls`)
};

// A check of one binary beyond its own consistency (problems()), supplied by a caller
// that can compile: the CLI rebuilds the source with NVRTC and compares the cubin
// byte for byte. true = verified; false = cannot be checked here (another NVRTC,
// generator or templates than this build's); an Error = it does not match. The cache
// library itself never compiles.
using BinaryCheck = std::function<Expected<bool>(const BinaryRecord&)>;

struct MergeOptions {
  // Empty: binaries are checked for consistency only (key re-derived from the
  // content, digest, ELF structure, arch and symbol). With a check, binaries it
  // cannot check are not imported (counted), and a mismatch refuses the file.
  BinaryCheck check_binary;
};

// What merge_from did. Binaries are content-addressed, so an existing key is kept;
// a tuning record replaces an existing one for the same key only if it is newer.
struct MergeReport {
  int binaries_added = 0, binaries_present = 0;
  int tunings_added = 0, tunings_replaced = 0, tunings_kept = 0;
  int binaries_rebuilt = 0;          // verified by check_binary
  int binaries_unverifiable = 0;     // check_binary could not check them: not imported
  int tunings_unverifiable = 0;      // their winners use those binaries: not imported
  int tunings_missing_binaries = 0;  // imported; their winners' binaries are in neither file
};

struct GcOptions {
  // Damaged records are always dropped. Also drop records that this toolchain cannot
  // use (empty fields match anything).
  std::optional<ToolchainIdentity> unusable_for;
  // Drop records created more than this many days before `now_ms`.
  std::optional<int64_t> older_than_days;
  int64_t now_ms = 0;  // 0 = the current time
};

struct GcReport {
  int binaries_removed = 0, tunings_removed = 0;
  SkipReport unusable;  // per reason, for records dropped as unusable
  int too_old = 0;
};

struct VerifyOptions {
  // Tries to load a cubin: true = loaded, false = not applicable here (e.g. another
  // arch than this GPU), an Error = it does not load. Empty = no load check; the cache
  // library never talks to the driver itself.
  std::function<Expected<bool>(const BinaryRecord&)> load_check;
  // Rebuilds a binary and compares (as MergeOptions::check_binary); empty = no rebuild.
  BinaryCheck rebuild_check;
};

struct VerifyIssue {
  std::string kind;  // "binary" or "tuning"
  std::string key;
  std::string label;  // kernel name or layer signature
  std::string problem;
};

struct VerifyReport {
  std::string integrity;  // PRAGMA integrity_check's verdict: "ok" or its complaints
  int binaries = 0, tunings = 0;
  int cubins_loaded = 0, cubins_not_applicable = 0;
  int rebuilt = 0, not_rebuildable = 0;  // with rebuild_check
  std::vector<VerifyIssue> issues;
  // Tuning records whose winner names binary keys the cache does not hold (not an
  // error: a compile-on-miss runtime compiles them; a cache-only one misses).
  std::vector<VerifyIssue> missing_binaries;
  bool ok() const { return integrity == "ok" && issues.empty(); }
};

class Cache {
 public:
  // Opens (and, unless read_only, creates or migrates) the cache at `path`.
  // Refuses, with an Error naming the fix and without changing the file: a file that
  // is not SQLite, a truncated or damaged one, a foreign SQLite database, one from a
  // newer ffnjit, and (for writing) a read-only file or location.
  static Expected<Cache> open(const std::string& path, const OpenOptions& options = {});

  Cache(Cache&&) noexcept;
  Cache& operator=(Cache&&) noexcept;
  ~Cache();

  const std::string& path() const;
  bool read_only() const;
  int schema_version() const;

  // --- compiled binaries ---------------------------------------------------
  // Stores `r` (created_at_ms 0 = now). A key already present is left as is: the key
  // hashes everything that determines the bytes.
  Status put_binary(const BinaryRecord& r);
  // The record under `key`, whatever toolchain made it.
  Expected<std::optional<BinaryRecord>> get_binary(const std::string& key);
  // The record under `key` if `current` can use it; otherwise none, and why.
  Expected<Found<BinaryRecord>> find_binary(const std::string& key,
                                            const ToolchainIdentity& current);
  // Every binary matching `filter` (ordered by kernel name, then key).
  Expected<std::vector<BinaryRecord>> list_binaries(const ListFilter& filter = {});
  // The binaries `current` can use; the rest are counted in `skipped`, never returned.
  Expected<Loaded<BinaryRecord>> load_binaries(const ToolchainIdentity& current,
                                               const ListFilter& filter = {});

  // --- tuning records ------------------------------------------------------
  // Inserts or replaces the record with the same key() (created_at_ms 0 = now).
  Status put_tuning(const TuningRecord& r);
  // The usable record for `layer_signature` whose bucket holds `tokens`: the narrowest
  // bucket, then measured before untimed, then the newest.
  Expected<Found<TuningRecord>> find_tuning(const ToolchainIdentity& current,
                                            const std::string& layer_signature, int64_t tokens);
  // Looks a tuning record up by its key().
  Expected<std::optional<TuningRecord>> get_tuning(const std::string& key);
  // Every tuning record matching `filter` (ordered by layer, bucket, toolchain).
  Expected<std::vector<TuningRecord>> list_tunings(const ListFilter& filter = {});
  Expected<Loaded<TuningRecord>> load_tunings(const ToolchainIdentity& current,
                                              const ListFilter& filter = {});

  // Keys of binaries and tuning records starting with `prefix` (for `show`).
  Expected<std::vector<std::string>> keys_with_prefix(const std::string& prefix);

  // --- maintenance ---------------------------------------------------------
  // Writes a consistent snapshot to `dest`, a new self-contained SQLite file (no WAL)
  // with the same schema. Refuses to overwrite an existing file.
  Status export_to(const std::string& dest);
  // Copies the records of the cache file at `other` into this one (binaries: keep
  // present keys; tuning: the newer created_at wins). `other` is untrusted: opened
  // read-only (OpenOptions::untrusted) and verified whole before anything is copied;
  // one damaged, forged or inconsistent record refuses the file, naming the record,
  // and nothing is imported. `import` of an exported file is the same operation.
  Expected<MergeReport> merge_from(const std::string& other, const MergeOptions& options = {});
  Expected<GcReport> gc(const GcOptions& options);
  // PRAGMA integrity_check, then every record complete and consistent (problems()),
  // winners' binary keys present, then (optionally) rebuilt and loadable.
  Expected<VerifyReport> verify(const VerifyOptions& options = {});

  struct Impl;

 private:
  explicit Cache(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Unix time in milliseconds.
int64_t now_ms();

}  // namespace ffnjit::cache
