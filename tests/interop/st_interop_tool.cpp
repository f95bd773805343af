// Test helper for the safetensors interop test: dumps what ffnjit reads, writes what Python must
// read.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/safetensors.hpp"
#include "support/bf16.hpp"
#include "support/hash.hpp"

using namespace ffnjit;

namespace {

// {"sharded", "metadata", "tensors": {name: {dtype, shape, sha256 of raw bytes, bf16_sha256}}}
int dump(const std::string& path) {
  auto s = st::Store::open(path);
  if (!s) return std::fprintf(stderr, "%s\n", s.error().message.c_str()), 1;
  nlohmann::json out = {{"sharded", s->sharded()},
                        {"metadata", s->metadata()},
                        {"tensors", nlohmann::json::object()}};
  for (const auto& name : s->names()) {
    const st::TensorRef& t = *s->find(name);
    nlohmann::json j = {{"dtype", st::dtype_name(t.info->dtype)},
                        {"shape", t.info->shape},
                        {"sha256", sha256_hex(t.raw())}};
    if (st::is_float_dtype(t.info->dtype)) {
      auto b = st::to_bf16(t);
      if (!b) return std::fprintf(stderr, "%s\n", b.error().message.c_str()), 1;
      j["bf16_sha256"] = sha256_hex({reinterpret_cast<const char*>(b->data()), b->size() * 2});
    }
    out["tensors"][name] = j;
  }
  std::printf("%s\n", out.dump(1).c_str());
  return 0;
}

// Deterministic tensors Python recomputes: f32[i] = i * 0.37f - 5, bf16 = RNE of that,
// f16 bits = 0x3c00 + i, u8[i] = i, plus a zero-sized tensor.
int write(const std::string& dir) {
  const int n = 96;
  std::vector<float> f32(n);
  std::vector<uint16_t> bf(n), f16(n);
  std::vector<uint8_t> u8(n);
  for (int i = 0; i < n; ++i) {
    f32[i] = float(i) * 0.37f - 5.0f;
    bf[i] = float_to_bf16(f32[i]);
    f16[i] = uint16_t(0x3c00 + i);
    u8[i] = uint8_t(i);
  }
  auto b = [](const auto& v) {
    return std::string_view(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(v[0]));
  };
  const std::vector<st::WriteTensor> ts = {{"a.f32", st::Dtype::kF32, {8, 12}, b(f32)},
                                           {"b.bf16", st::Dtype::kBF16, {2, 3, 16}, b(bf)},
                                           {"c.f16", st::Dtype::kF16, {96}, b(f16)},
                                           {"d.u8", st::Dtype::kU8, {4, 24}, b(u8)},
                                           {"e.empty", st::Dtype::kF32, {0, 3}, {}}};
  const std::map<std::string, std::string> meta = {{"writer", "ffnjit"}, {"note", "caf\xc3\xa9"}};
  if (auto s = st::write_file(dir + "/ffnjit_single.safetensors", ts, meta); !s)
    return std::fprintf(stderr, "%s\n", s.message().c_str()), 1;
  std::filesystem::create_directories(dir + "/ffnjit_sharded");
  if (auto s = st::write_sharded(dir + "/ffnjit_sharded", ts, 3, meta); !s)
    return std::fprintf(stderr, "%s\n", s.message().c_str()), 1;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "dump") == 0) return dump(argv[2]);
  if (argc == 3 && std::strcmp(argv[1], "write") == 0) return write(argv[2]);
  std::fprintf(stderr, "usage: st_interop_tool dump <file|dir> | write <dir>\n");
  return 2;
}
