// Test helpers for the cache: deterministic records and raw dumps of a cache file.
#pragma once

#include <sqlite3.h>
#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

#include "cache/records.hpp"
#include "codegen/version.hpp"
#include "support/hash.hpp"

namespace ffnjit::cache::testing {

// A fresh directory per test, removed afterwards.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "ffnjit-cache-test-XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

inline ToolchainIdentity h100() {
  return {"NVIDIA H100 80GB HBM3", "sm_90a", "580.65", "13.0", kGeneratorVersion};
}

// The templates hash test records claim (not this build's: the CLI cannot rebuild them).
inline const char* kTestTemplatesHash = "0123456789abcdef";

// A minimal well-formed CUDA ELF executable (the CUDA 13 layout: ELF ABI version 8, SM
// number in e_flags bits 8-15) for `arch` whose symbol table defines the function
// `symbol` in a .text section holding `payload`: what check_cubin() accepts.
inline std::string make_cubin(const std::string& arch, const std::string& symbol,
                              const std::string& payload) {
  auto put = [](std::string& b, size_t off, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) b[off + size_t(i)] = char((v >> (8 * i)) & 0xff);
  };
  auto align8 = [](std::string& b) { b.resize((b.size() + 7) & ~size_t(7), '\0'); };
  int sm = 0;
  for (char c : arch.substr(3))
    if (c >= '0' && c <= '9') sm = sm * 10 + (c - '0');
  std::string b(64, '\0');
  const std::string shstr =
      std::string("\0.shstrtab\0.strtab\0.symtab\0.text.", 33) + symbol + '\0';
  const size_t shstr_off = b.size();
  b += shstr;
  const size_t str_off = b.size();
  b += '\0' + symbol + '\0';
  align8(b);
  const size_t sym_off = b.size();
  b.append(48, '\0');
  put(b, sym_off + 24, 1, 4);        // st_name: "symbol" at 1 in .strtab
  b[sym_off + 24 + 4] = char(0x12);  // STB_GLOBAL, STT_FUNC
  put(b, sym_off + 24 + 6, 4, 2);    // st_shndx: the .text section
  put(b, sym_off + 24 + 16, payload.size(), 8);
  align8(b);
  const size_t text_off = b.size();
  b += payload;
  align8(b);
  const size_t shoff = b.size();
  b.append(5 * 64, '\0');
  auto section = [&](int i, uint32_t name, uint32_t type, uint64_t flags, size_t off, size_t size,
                     uint32_t link, uint32_t info, uint64_t entsize) {
    const size_t h = shoff + size_t(i) * 64;
    put(b, h, name, 4), put(b, h + 4, type, 4), put(b, h + 8, flags, 8), put(b, h + 24, off, 8);
    put(b, h + 32, size, 8), put(b, h + 40, link, 4), put(b, h + 44, info, 4), put(b, h + 48, 1, 8);
    put(b, h + 56, entsize, 8);
  };
  section(1, 1, 3, 0, shstr_off, shstr.size(), 0, 0, 0);      // .shstrtab
  section(2, 11, 3, 0, str_off, symbol.size() + 2, 0, 0, 0);  // .strtab
  section(3, 19, 2, 0, sym_off, 48, 2, 1, 24);                // .symtab -> .strtab
  section(4, 27, 1, 6, text_off, payload.size(), 0, 0, 0);    // .text.<symbol>, AX
  std::memcpy(b.data(),
              "\x7f"
              "ELF",
              4);
  b[4] = 2, b[5] = 1, b[6] = 1, b[7] = char(0x41), b[8] = 8;  // 64-bit, LE, v1, CUDA ABI v8
  put(b, 16, 2, 2);                                           // ET_EXEC
  put(b, 18, 190, 2);                                         // EM_CUDA
  put(b, 20, 1, 4);
  put(b, 40, shoff, 8);
  put(b, 48, 0x06000004u | uint32_t(sm) << 8, 4);
  put(b, 52, 64, 2), put(b, 58, 64, 2), put(b, 60, 5, 2), put(b, 62, 1, 2);
  return b;
}

// Sets what is derived from a binary's content: its cubin digest and its key.
inline void seal(BinaryRecord& r) {
  r.cubin_sha256 = sha256_hex(r.cubin);
  r.key = binary_key(r);
}

// A binary whose every field derives from (`writer`, `index`), so a reader can check
// it is complete and exact without knowing what was written.
inline BinaryRecord make_binary(int writer, int index, const ToolchainIdentity& t = h100(),
                                size_t cubin_bytes = 0) {
  BinaryRecord r;
  std::string id = "w" + std::to_string(writer) + "-" + std::to_string(index);
  r.kernel_name = "ffnjit_gate_pack_" + t.arch + "_bf16_" + id;
  r.lowered_name = r.kernel_name;
  r.arch = t.arch;
  r.generator_version = t.generator_version;
  r.nvrtc_version = t.nvrtc_version;
  if (!cubin_bytes) cubin_bytes = 200 + size_t(index * 37 % 4000);
  std::string payload;
  uint32_t x = uint32_t(writer * 7919 + index * 104729 + 1);
  while (payload.size() + 400 < cubin_bytes) {
    x = x * 1664525u + 1013904223u;
    payload.push_back(char(x >> 24));  // includes NUL bytes: blobs must round-trip exactly
  }
  r.cubin = make_cubin(t.arch, r.lowered_name, payload);
  r.ptx = index % 2 ? "" : "// ptx for " + id + "\n.version 8.8\n";
  r.source = "// generated source for " + id + "\n__global__ void k() {}\n";
  r.spec = "gate_pack d_model=2048 d_ff=5632 " + id;
  r.templates_hash = kTestTemplatesHash;
  r.resources = {
      {"registers", 96 + index % 32}, {"spill_store_bytes", 0}, {"static_smem_bytes", 1024}};
  r.options = {"-arch=" + t.arch, "-default-device"};
  r.compile_ms = 100.5 + index;
  seal(r);
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
