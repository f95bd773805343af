// Test helpers for the cache: deterministic records and raw dumps of a cache file.
#pragma once

#include <sqlite3.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "codegen/version.hpp"
#include "cache/records.hpp"
#include "support/hash.hpp"

namespace ffnjit::cache::testing {

// A fresh directory per test, removed afterwards.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ffnjit-cache-test-XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

inline ToolchainIdentity h100() {
  return {"NVIDIA H100 80GB HBM3", "sm_90a", "580.65", "13.0", kGeneratorVersion};
}

// A binary whose every field derives from (`writer`, `index`), so a reader can check
// it is complete and exact without knowing what was written.
inline BinaryRecord make_binary(int writer, int index, const ToolchainIdentity& t = h100(),
                                size_t cubin_bytes = 0) {
  BinaryRecord r;
  std::string id = "w" + std::to_string(writer) + "-" + std::to_string(index);
  r.key =
      sha256_hex("binary " + id + " " + t.arch + " " + t.nvrtc_version + " " + t.generator_version);
  r.kernel_name = "ffnjit_gate_pack_" + t.arch + "_bf16_" + id;
  r.lowered_name = "_Z" + r.kernel_name;
  r.arch = t.arch;
  r.generator_version = t.generator_version;
  r.nvrtc_version = t.nvrtc_version;
  if (!cubin_bytes) cubin_bytes = 200 + size_t(index * 37 % 4000);
  r.cubin = std::string(
      "\x7f"
      "ELF",
      4);
  uint32_t x = uint32_t(writer * 7919 + index * 104729 + 1);
  while (r.cubin.size() < cubin_bytes) {
    x = x * 1664525u + 1013904223u;
    r.cubin.push_back(char(x >> 24));  // includes NUL bytes: blobs must round-trip exactly
  }
  r.ptx = index % 2 ? "" : "// ptx for " + id + "\n.version 8.8\n";
  r.source = "// generated source for " + id + "\n__global__ void k() {}\n";
  r.spec = "gate_pack d_model=2048 d_ff=5632 " + id;
  r.resources = {
      {"registers", 96 + index % 32}, {"spill_store_bytes", 0}, {"static_smem_bytes", 1024}};
  r.options = {"-arch=" + t.arch, "-default-device"};
  r.compile_ms = 100.5 + index;
  return r;
}

inline TuningRecord make_tuning(int writer, int index, const ToolchainIdentity& t = h100(),
                                int64_t bmin = 1, int64_t bmax = 16) {
  TuningRecord r;
  r.toolchain = t;
  r.ffnjit_version = kGeneratorVersion;
  r.layer_signature = "layer" + std::to_string(index) + ":w" + std::to_string(writer) +
                      ":d2048:f5632:gated:profile=abcdef";
  r.bucket_min = bmin;
  r.bucket_max = bmax;
  r.winner = {{"family", "sparse"}, {"kernels", {"ffnjit_gate_pack_x", "ffnjit_up_down_x"}}};
  r.candidates = nlohmann::json::array(
      {{{"config", "a"}, {"us", 10.5}}, {{"config", "b"}, {"error", "spills"}}});
  r.dense_us = 50.0;
  r.winner_us = 10.5;
  return r;
}

// Every row of both tables, each value with its SQLite type and exact bytes, in key order.
inline std::string dump(const std::string& path) {
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return "cannot open";
  }
  for (const char* table : {"binaries", "tuning"}) {
    sqlite3_stmt* st = nullptr;
    std::string sql = std::string("SELECT * FROM ") + table + " ORDER BY key";
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      out += "no table ";
      out += table;
      continue;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
      for (int c = 0; c < sqlite3_column_count(st); ++c) {
        int type = sqlite3_column_type(st, c);
        const char* p = static_cast<const char*>(sqlite3_column_blob(st, c));
        int n = sqlite3_column_bytes(st, c);
        out += std::to_string(type) + ":" + std::to_string(n) + ":";
        if (p) out.append(p, size_t(n));
        out += '|';
      }
      out += '\n';
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return out;
}

}  // namespace ffnjit::cache::testing
