// libFuzzer target: `ffnjit cache import FILE` of an untrusted file, through the cache
// library: the header and WAL readers that decide whose file it is (cache/sqlite_header),
// the read-only open, record decoding, key re-derivation and the CUDA ELF check
// (cache/elf), and merge_from's all-or-nothing verification.
//
// Input: the file's bytes; bytes after the marker "\0FFNJWAL" become its -wal file.
// Checked on every input: the file and its -wal keep their bytes and no -shm or
// -journal appears beside them; an accepted import left only sound records (every
// binary passes problems(), verify() is clean); a refused one left the cache empty.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "cache/cache.hpp"
#include "cache/elf.hpp"
#include "cache/sqlite_header.hpp"

namespace {

using namespace ffnjit::cache;

const std::string& work_dir() {
  static const std::string dir = [] {
    std::string tmpl = (::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") +
                       std::string("/ffnjit-fuzz-XXXXXX");
    const char* made = ::mkdtemp(tmpl.data());
    if (!made) __builtin_trap();
    return std::string(made);
  }();
  return dir;
}

bool write_bytes(const std::string& path, std::string_view bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  return std::fclose(f) == 0 && ok;
}

std::string read_bytes(const std::string& path) {
  std::string out;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return "(absent)";
  char buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  std::fclose(f);
  return out;
}

void remove_db(const std::string& path) {
  for (const char* s : {"", "-wal", "-shm", "-journal"}) ::unlink((path + s).c_str());
}

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  static const std::string_view kMarker("\0FFNJWAL", 8);
  const size_t cut = input.find(kMarker);
  const std::string_view file = input.substr(0, cut);
  const std::string_view wal =
      cut == std::string_view::npos ? std::string_view() : input.substr(cut + kMarker.size());

  // The parsers on their own, straight from the bytes.
  (void)parse_sqlite_header(file);
  (void)wal_page1(wal);
  (void)check_cubin(file, "sm_90a", "ffnjit_k");

  const std::string in = work_dir() + "/in.ffnjit", dst = work_dir() + "/dst.db";
  remove_db(in);
  remove_db(dst);
  check(write_bytes(in, file));
  if (cut != std::string_view::npos) check(write_bytes(in + "-wal", wal));
  const std::string wal_before = read_bytes(in + "-wal");

  // Reading it as `cache ls` and `cache verify` of that file would.
  if (auto ro = Cache::open(in, {.read_only = true, .untrusted = true})) {
    ListFilter light;
    light.with_payload = false;
    (void)ro->list_binaries(light);
    (void)ro->list_tunings();
    (void)ro->verify();
  }

  auto cache = Cache::open(dst);
  check(cache.has_value());
  auto rep = cache->merge_from(in);
  auto bins = cache->list_binaries();
  auto tuns = cache->list_tunings();
  check(bins.has_value() && tuns.has_value());
  if (rep) {
    for (const auto& b : *bins) check(problems(b).empty());
    auto v = cache->verify();
    check(v.has_value() && v->ok());
  } else {
    check(bins->empty() && tuns->empty());  // nothing imported
  }
  // The imported file and its -wal keep their bytes; nothing appears beside them.
  check(read_bytes(in) == file);
  check(read_bytes(in + "-wal") == wal_before);
  struct stat st;
  check(::stat((in + "-shm").c_str(), &st) != 0 && ::stat((in + "-journal").c_str(), &st) != 0);
  return 0;
}
