// Unit tests of the shared untrusted-input machinery (support/files.hpp, support/json.hpp),
// the linear FFN tensor-name matcher, Llama mlp_bias discovery, and the documented limits.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "model/checkpoint.hpp"
#include "model/profiler.hpp"
#include "model/safetensors.hpp"
#include "support/bf16.hpp"
#include "support/files.hpp"
#include "support/json.hpp"
#include "support/strings.hpp"
#include "tests/unit/model_test_util.hpp"

using namespace ffnjit;
using nlohmann::json;
namespace fs = std::filesystem;

TEST_CASE("parse_json: nesting up to kMaxJsonDepth parses, one level more is refused") {
  const auto nest = [](int levels) {
    return std::string(size_t(levels), '[') + std::string(size_t(levels), ']');
  };
  REQUIRE(parse_json(nest(kMaxJsonDepth), "x"));
  auto deep = parse_json(nest(kMaxJsonDepth + 1), "deep.json");
  REQUIRE_FALSE(deep);
  CHECK(deep.error().kind == ErrorKind::kInvalidArgument);
  CHECK_THAT(deep.error().message, Catch::StartsWith("deep.json: nesting deeper than 64 levels"));
  // Objects count as levels too, and a caller can ask for less.
  CHECK_FALSE(parse_json(R"({"a":{"b":[1]}})", "x", {.max_depth = 2}));
  CHECK(parse_json(R"({"a":{"b":[1]}})", "x", {.max_depth = 3}));
  // Brackets inside strings are text, not nesting.
  CHECK(parse_json("\"" + std::string(100000, '[') + "\"", "x"));
}

TEST_CASE("parse_json: the tree equals nlohmann's; duplicate keys refused on request") {
  const std::string text =
      R"({"b":[1,-2,3.5,true,null,"s",{"k":[]}],"a":{"x":{"y":18446744073709551615}},"e":{}})";
  auto j = parse_json(text, "x");
  REQUIRE(j);
  CHECK(*j == json::parse(text));
  CHECK((*j)["a"]["x"]["y"].is_number_unsigned());
  const std::string dup = R"({"a":1,"b":{"c":1,"c":2}})";
  auto last = parse_json(dup, "x");
  REQUIRE(last);
  CHECK((*last)["b"]["c"] == 2);  // nlohmann's rule when duplicates are allowed
  auto refused = parse_json(dup, "dup.json", {.refuse_duplicate_keys = true});
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message == "dup.json: key 'c' appears twice");
  // Same key in sibling objects is not a duplicate.
  CHECK(parse_json(R"([{"a":1},{"a":2}])", "x", {.refuse_duplicate_keys = true}));
  auto bad = parse_json("{\"a\":\"" + std::string(100000, 'x') + "\x01\"}", "bad.json");
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().message, Catch::Contains("bad.json: [json.exception.parse_error"));
  CHECK(bad.error().message.size() < 400);  // the lexer's token is not quoted whole
  CHECK_FALSE(parse_json("", "x"));
  CHECK_FALSE(parse_json("{} x", "x"));
}

TEST_CASE("excerpts are bounded, cut at UTF-8 boundaries, and never throw") {
  CHECK(text_excerpt("short") == "short");
  CHECK(text_excerpt(std::string(500, 'a'), 10) == "aaaaaaaaaa... (500 bytes)");
  // "é" is 2 bytes: a cut at byte 3 of "aaé..." backs off to 2.
  CHECK(text_excerpt("aa\xc3\xa9xxxx", 3) == "aa... (8 bytes)");
  json big = json::array();
  for (int i = 0; i < 100000; ++i) big.push_back(i);
  const std::string e = json_excerpt(big, 20);
  CHECK(e.size() <= 23);
  CHECK_THAT(e, Catch::StartsWith("[0,1,2,3") && Catch::EndsWith("..."));
  CHECK(json_excerpt(json::parse(R"({"k":[1,"s"]})")) == R"({"k":[1,"s"]})");
  CHECK(json_excerpt(json(std::string("\xff"))) == "\"\xef\xbf\xbd\"");
  json deep = 1;  // deeper than any parse allows, built in code: still safe
  for (int i = 0; i < 10000; ++i) deep = json::array({std::move(deep)});
  CHECK(json_excerpt(deep, 100).size() <= 103);
  CHECK(dump_json(json{{"path", "dir\xff"}}) == "{\"path\":\"dir\xef\xbf\xbd\"}");
}

TEST_CASE("InputFile: regular files only, size caps, what and path in every message") {
  testutil::TempDir d;
  testutil::write_text(d / "ok.json", "{\"a\":1}");
  auto ok = read_input_file(d / "ok.json", "config.json", 7);
  REQUIRE(ok);
  CHECK(*ok == "{\"a\":1}");
  auto big = read_input_file(d / "ok.json", "config.json", 6);
  REQUIRE_FALSE(big);
  CHECK(big.error().message ==
        d / "ok.json" +
            ": config.json is 7 bytes, more than ffnjit reads (6 bytes); is it the "
            "right file?");
  auto missing = read_input_file(d / "none.json", "config.json", 100);
  CHECK(missing.error().kind == ErrorKind::kNotFound);
  CHECK(missing.error().message == d / "none.json" + ": no such file");
  auto dir = read_input_file(d.path.string(), "a profile", 100);
  CHECK(dir.error().message ==
        d.path.string() + ": is a directory, not a regular file; a profile must be a regular file");
  // Symlinks are followed unless asked not to (the HF hub cache is symlinks).
  fs::create_symlink(d / "ok.json", d / "link.json");
  CHECK(read_input_file(d / "link.json", "config.json", 100));
  auto nofollow = read_input_file(d / "link.json", "a cache file", 100, false);
  REQUIRE_FALSE(nofollow);
  CHECK_THAT(nofollow.error().message, Catch::Contains("is a symbolic link"));
  if (::geteuid() != 0) {
    ::chmod((d / "ok.json").c_str(), 0);
    CHECK(read_input_file(d / "ok.json", "config.json", 100).error().kind == ErrorKind::kIo);
  }
  // read_file (support/strings.hpp) rides on the same helper: a device fails at once.
  std::string s;
  CHECK_FALSE(read_file("/dev/zero", &s));
}

TEST_CASE("write_file_atomically: umask mode, no leftovers, errors name the path") {
  testutil::TempDir d;
  REQUIRE(write_file_atomically(d / "a.txt", "one"));
  REQUIRE(write_file_atomically(d / "a.txt", "two"));  // replaces
  std::string s;
  REQUIRE(read_file(d / "a.txt", &s));
  CHECK(s == "two");
  struct stat st {};
  REQUIRE(::stat((d / "a.txt").c_str(), &st) == 0);
  const mode_t mask = ::umask(022);
  ::umask(mask);
  CHECK((st.st_mode & 0777) == (0666 & ~mask));
  int entries = 0;
  for (const auto& e : fs::directory_iterator(d.path)) entries += e.exists();
  CHECK(entries == 1);
  auto no_dir = write_file_atomically(d / "missing/a.txt", "x");
  REQUIRE_FALSE(no_dir);
  CHECK_THAT(no_dir.message(), Catch::Contains("missing/a.txt: cannot create a temporary file"));
  fs::create_directory(d / "sub");
  CHECK_FALSE(write_file_atomically(d / "sub", "x"));  // rename over a directory fails
  CHECK(fs::is_directory(d / "sub"));
}

TEST_CASE("match_ffn_tensor: the three families' grammar, linear in the name") {
  auto m = [](const std::string& name) { return model::match_ffn_tensor(name); };
  struct Want {
    const char* name;
    const char* naming;
    const char* prefix;
    int layer;
    const char* role;
    bool bias;
  };
  const Want ok[] = {
      {"model.layers.0.mlp.gate_proj.weight", "llama", "model.", 0, "gate_proj", false},
      {"model.layers.31.mlp.down_proj.bias", "llama", "model.", 31, "down_proj", true},
      {"layers.7.mlp.up_proj.weight", "llama", "", 7, "up_proj", false},
      {"model.decoder.layers.12.fc1.bias", "opt", "model.decoder.", 12, "fc1", true},
      {"x.layers.1.layers.2.fc2.weight", "opt", "x.layers.1.", 2, "fc2", false},
      {"transformer.h.999999.mlp.c_proj.weight", "gpt2", "transformer.", 999999, "c_proj", false},
      {"h.0.mlp.c_fc.bias", "gpt2", "", 0, "c_fc", true},
  };
  for (const Want& w : ok) {
    INFO(w.name);
    auto r = m(w.name);
    REQUIRE(r);
    REQUIRE(r->has_value());
    CHECK(std::string((*r)->naming) == w.naming);
    CHECK((*r)->prefix == w.prefix);
    CHECK((*r)->layer == w.layer);
    CHECK((*r)->role == w.role);
    CHECK((*r)->bias == w.bias);
  }
  for (const char* no :
       {"model.layers.0.mlp.gate_proj.weights", "model.layers.0.gate_proj.weight",
        "model.layers.0.mlp.fc1.weight", "model.layers.x.fc1.weight", "model.layers..fc1.weight",
        "model.h.0.c_fc.weight", "model.layers.0.self_attn.q_proj.weight", "layers0.fc1.weight",
        ".weight", "", "model.norm.weight", "model.layers.0.mlp.up_proj"}) {
    INFO(no);
    auto r = m(no);
    REQUIRE(r);
    CHECK_FALSE(r->has_value());
  }
  CHECK_THAT(m("model.layers.1234567.fc1.weight").error().message,
             Catch::Contains("implausible layer number"));
  CHECK_THAT(m("model.layers.007.mlp.up_proj.weight").error().message,
             Catch::Contains("writes layer 7 as '007'; layer numbers have no leading zeros"));
  // At the name limit a long prefix still matches; above it the name is refused; time
  // is linear (a 47k-character name overflowed std::regex's recursion).
  const std::string tail = ".layers.3.fc1.weight";
  const std::string at_limit = std::string(st::kMaxTensorNameBytes - tail.size(), 'p') + tail;
  auto r = m(at_limit);
  REQUIRE(r);
  REQUIRE(r->has_value());
  CHECK((*r)->prefix.size() == at_limit.size() - std::string("layers.3.fc1.weight").size());
  const auto t0 = std::chrono::steady_clock::now();
  auto huge = m(std::string(10'000'000, 'a') + tail);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  REQUIRE_FALSE(huge);
  CHECK_THAT(huge.error().message, Catch::Contains("is longer than the limit of 1024 bytes"));
  CHECK(huge.error().message.size() < 300);
}

namespace {
void write_llama(const testutil::TempDir& d, const std::vector<std::string>& biases,
                 std::vector<std::string>& keep) {
  const json cfg = {{"model_type", "llama"},
                    {"hidden_act", "relu"},
                    {"hidden_size", 8},
                    {"num_hidden_layers", 1},
                    {"mlp_bias", true}};
  testutil::write_text(d / "config.json", cfg.dump());
  std::vector<st::WriteTensor> w;
  keep.reserve(8);
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float v) {
    size_t n = 1;
    for (auto s : shape) n *= size_t(s);
    std::vector<uint16_t> b(n, float_to_bf16(v));
    keep.emplace_back(reinterpret_cast<const char*>(b.data()), n * 2);
    w.push_back({name, st::Dtype::kBF16, shape, keep.back()});
  };
  const std::string p = "model.layers.0.mlp.";
  add(p + "gate_proj.weight", {16, 8}, 0.5f);
  add(p + "up_proj.weight", {16, 8}, 0.25f);
  add(p + "down_proj.weight", {8, 16}, 0.125f);
  for (const auto& b : biases) add(p + b + ".bias", {b == "down_proj" ? 8 : 16}, -3.0f);
  REQUIRE(st::write_file(d / "model.safetensors", w));
}
}  // namespace

TEST_CASE("Llama mlp_bias: discovered, loaded, in the CPU gate; partial sets refused") {
  testutil::TempDir d;
  std::vector<std::string> keep;
  write_llama(d, {"gate_proj", "up_proj", "down_proj"}, keep);
  auto c = model::Checkpoint::open(d.path.string());
  REQUIRE(c);
  const model::FfnLayer& L = c->info().layers.at(0);
  CHECK(L.gate_bias == "model.layers.0.mlp.gate_proj.bias");
  CHECK(L.up_bias == "model.layers.0.mlp.up_proj.bias");
  CHECK(L.down_bias == "model.layers.0.mlp.down_proj.bias");
  CHECK(L.has_bias());
  // Served since the kernels take biases: no "biases are not served" note any more.
  for (const auto& n : c->info().notes) CHECK(n.find("do not take biases") == std::string::npos);
  auto w = c->load_layer(0);
  REQUIRE(w);
  REQUIRE(w->gate_bias.size() == 16);
  CHECK(w->gate_bias[3] == -3.0f);
  CHECK(w->down_bias.size() == 8);
  // The CPU gate adds the gate bias: x = all ones gives 8 * 0.5 - 3 = 1.
  std::vector<uint16_t> x(8, float_to_bf16(1.0f));
  std::vector<float> g(16);
  REQUIRE(model::cpu_gate(1)(*w, x.data(), 1, g.data()));
  CHECK(g[0] == 1.0f);

  testutil::TempDir part;
  std::vector<std::string> keep2;
  write_llama(part, {"gate_proj"}, keep2);
  auto p = model::Checkpoint::open(part.path.string());
  REQUIRE_FALSE(p);
  CHECK_THAT(p.error().message,
             Catch::Contains("layer 0 has biases for only some of gate_proj, up_proj and "
                             "down_proj"));
}

TEST_CASE("the documented limits are the code's") {
#ifndef FFNJIT_SOURCE_DIR
  WARN("[SKIP] FFNJIT_SOURCE_DIR is not defined; cannot read docs/");
#else
  std::string model_md, profile_md, files_hpp;
  REQUIRE(read_file(std::string(FFNJIT_SOURCE_DIR) + "/docs/model.md", &model_md));
  REQUIRE(read_file(std::string(FFNJIT_SOURCE_DIR) + "/docs/profile.md", &profile_md));
  const auto mib = [](uint64_t b) { return std::to_string(b >> 20) + " MiB"; };
  CHECK_THAT(model_md, Catch::Contains(std::to_string(st::kMaxTensorNameBytes) +
                                       " bytes, `st::kMaxTensorNameBytes`"));
  CHECK_THAT(model_md, Catch::Contains(std::to_string(kMaxJsonDepth) + " levels, `kMaxJsonDepth`"));
  CHECK_THAT(model_md, Catch::Contains(mib(kMaxConfigJsonBytes) + " (`kMaxConfigJsonBytes`)"));
  CHECK_THAT(model_md, Catch::Contains(mib(kMaxIndexJsonBytes) + " (`kMaxIndexJsonBytes`)"));
  CHECK_THAT(model_md, Catch::Contains(mib(kMaxProfileJsonBytes) + " (`kMaxProfileJsonBytes`)"));
  CHECK_THAT(profile_md, Catch::Contains(mib(kMaxProfileJsonBytes)));
  CHECK_THAT(profile_md, Catch::Contains(std::to_string(kMaxJsonDepth) + " levels"));
  // What the docs say about the profile gate and biases.
  CHECK_THAT(profile_md, Catch::Contains("The gate runs on the GPU when there is one"));
  CHECK_THAT(model_md, Catch::Contains("the kernels do not serve biases"));
#endif
}
