// Crafted input files (issue 18, items 3-5 and 9): long names, deep JSON nesting, huge
// headers, FIFOs, devices, oversized side files, symlinked outputs. Each case crashed,
// hung, grew without bound, ran quadratically or was silently accepted before; now each
// is refused quickly with a message of bounded size, or handled linearly. Only APIs that
// predate the fix are used, so the file also builds (and fails) on the old code.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <thread>

#include "model/checkpoint.hpp"
#include "model/demo.hpp"
#include "model/profile.hpp"
#include "model/safetensors.hpp"
#include "support/strings.hpp"
#include "tests/unit/model_test_util.hpp"

using namespace ffnjit;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Sanitizer and debug builds are ~10x slower; timing bounds scale with them.
#if defined(__SANITIZE_ADDRESS__)
constexpr double kSlow = 10;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr double kSlow = 10;
#else
constexpr double kSlow = 1;
#endif
#else
constexpr double kSlow = 1;
#endif

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string nested(size_t levels, const std::string& inner = "1") {
  return std::string(levels, '[') + inner + std::string(levels, ']');
}

// A small valid Llama ReLU checkpoint: 16 x 48, `layers` layers, config as given.
std::vector<st::WriteTensor> llama_tensors(int layers, std::vector<std::string>& keep,
                                           const std::vector<std::string>& extra_names = {}) {
  std::vector<st::WriteTensor> w;
  keep.reserve(size_t(layers) * 3 + extra_names.size() + 1);
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    size_t n = 2;
    for (auto s : shape) n *= size_t(s);
    keep.emplace_back(n, '\x01');
    w.push_back({name, st::Dtype::kBF16, shape, keep.back()});
  };
  for (int l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".mlp.";
    add(p + "gate_proj.weight", {48, 16});
    add(p + "up_proj.weight", {48, 16});
    add(p + "down_proj.weight", {16, 48});
  }
  for (const auto& n : extra_names) add(n, {48, 16});
  return w;
}

json relu_config(int layers) {
  return {{"model_type", "llama"},
          {"hidden_act", "relu"},
          {"hidden_size", 16},
          {"num_hidden_layers", layers}};
}

void write_checkpoint(const testutil::TempDir& d, const std::string& config_text, int layers,
                      const std::vector<std::string>& extra_names = {}) {
  testutil::write_text(d / "config.json", config_text);
  std::vector<std::string> keep;
  REQUIRE(st::write_file(d / "model.safetensors", llama_tensors(layers, keep, extra_names)));
}

std::string open_error(const testutil::TempDir& d) {
  auto c = model::Checkpoint::open(d.path.string());
  return c ? std::string("(opened)") : c.error().message;
}

// Code that blocks on a FIFO would hang the test; after 5 s this opens the write end
// (only if a reader is waiting), so such code fails the test instead of hanging it.
struct FifoRescuer {
  std::atomic<bool> done{false};
  std::thread t;
  explicit FifoRescuer(std::string path)
      : t([this, path] {
          for (int i = 0; i < 50 && !done; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
          if (done) return;
          const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
          if (fd >= 0) ::close(fd);
        }) {}
  ~FifoRescuer() {
    done = true;
    t.join();
  }
};

std::string read_all(const std::string& path) {
  std::string s;
  REQUIRE(read_file(path, &s));
  return s;
}

}  // namespace

TEST_CASE("a 50k-character tensor name is refused, not a stack overflow in discovery") {
  testutil::TempDir d;
  const std::string long_name = std::string(50000, 'a') + ".layers.0.mlp.up_proj.weight";
  // By hand: ffnjit's writer refuses such a name.
  std::vector<std::string> keep;
  auto tensors = llama_tensors(1, keep);
  tensors.push_back({long_name, st::Dtype::kBF16, {48, 16}, keep[0]});
  json hdr = json::object();
  std::string data;
  for (const auto& t : tensors) {
    hdr[t.name] = {{"dtype", "BF16"},
                   {"shape", t.shape},
                   {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  testutil::write_text(d / "model.safetensors", testutil::st_image(hdr.dump(), data));
  testutil::write_text(d / "config.json", relu_config(1).dump());
  const std::string err = open_error(d);
  CHECK_THAT(err, Catch::Contains("a tensor name of 50028 bytes") &&
                      Catch::Contains("longer than the limit of 1024 bytes"));
  CHECK(err.size() < 1000);  // the message quotes an excerpt, not the name
}

TEST_CASE("JSON nested 100k levels deep is refused before any tree is built") {
  const std::string deep = nested(100000);
  SECTION("config.json (was: stack overflow in the fingerprint's dump)") {
    testutil::TempDir d;
    std::string cfg = relu_config(1).dump();
    cfg.insert(cfg.size() - 1, ",\"x\":" + deep);
    write_checkpoint(d, cfg, 1);
    CHECK_THAT(open_error(d), Catch::Contains("config.json: not valid JSON") &&
                                  Catch::Contains("nesting deeper than 64 levels"));
  }
  SECTION("index.json metadata (was: stack overflow in its dump)") {
    testutil::TempDir d;
    testutil::write_text(d / "config.json", relu_config(1).dump());
    std::vector<std::string> keep;
    REQUIRE(st::write_sharded(d.path.string(), llama_tensors(1, keep), 2));
    const std::string index = d / "model.safetensors.index.json";
    json j = json::parse(read_all(index));
    j.erase("metadata");
    std::string text = j.dump();
    text.insert(1, "\"metadata\":{\"deep\":" + deep + "},");
    testutil::write_text(index, text);
    CHECK_THAT(open_error(d), Catch::Contains("not a valid index") &&
                                  Catch::Contains("nesting deeper than 64 levels"));
  }
  SECTION("a safetensors header's shape (was: stack overflow dumping it into the message)") {
    const std::string hdr = R"({"a":{"dtype":"F32","shape":)" + deep + R"(,"data_offsets":[0,4]}})";
    auto h = st::parse_file_image(testutil::st_image(hdr, "0000"), "deep.safetensors");
    REQUIRE_FALSE(h);
    CHECK_THAT(h.error().message, Catch::Contains("deep.safetensors") &&
                                      Catch::Contains("nesting deeper than 64 levels"));
  }
  SECTION("a profile's bad integer (was: stack overflow dumping it into the message)") {
    profile::Builder b;
    REQUIRE(b.add_layer(0, 8, 16, true));
    std::vector<float> g(16, 1.0f);
    REQUIRE(b.add_gate(0, g.data(), 1));
    json j = json::parse(profile::to_json(b.finish(std::string(64, 'a'), "m", "test")));
    j["layers"][0]["index"] = "DEEP";
    std::string text = j.dump();
    text.replace(text.find("\"DEEP\""), 6, deep);
    auto p = profile::parse(text, "deep.json");
    REQUIRE_FALSE(p);
    CHECK_THAT(p.error().message, Catch::Contains("nesting deeper than 64 levels"));
  }
}

TEST_CASE("error messages quote a bounded excerpt of a huge bad value") {
  std::string shape = "[";
  for (int i = 0; i < 200000; ++i) shape += "1,";
  shape += "-1]";
  const std::string hdr = R"({"a":{"dtype":"F32","shape":)" + shape + R"(,"data_offsets":[0,4]}})";
  auto h = st::parse_file_image(testutil::st_image(hdr, "0000"), "wide.safetensors");
  REQUIRE_FALSE(h);
  CHECK_THAT(h.error().message, Catch::Contains("tensor 'a': shape [1,1,1") &&
                                    Catch::Contains("must hold non-negative integers"));
  CHECK(h.error().message.size() < 300);
  // A profile whose "index" is a 1 MB string.
  profile::Builder b;
  REQUIRE(b.add_layer(0, 8, 16, true));
  std::vector<float> g(16, 1.0f);
  REQUIRE(b.add_gate(0, g.data(), 1));
  json j = json::parse(profile::to_json(b.finish(std::string(64, 'a'), "m", "test")));
  j["layers"][0]["index"] = std::string(1 << 20, 'x');
  auto p = profile::parse(j.dump(), "big.json");
  REQUIRE_FALSE(p);
  CHECK_THAT(p.error().message, Catch::Contains("layers[0].index: must be a non-negative integer"));
  CHECK(p.error().message.size() < 300);
  // config.json strings quoted in the refusal of a non-ReLU model.
  testutil::TempDir d;
  json cfg = relu_config(1);
  cfg["model_type"] = std::string(1 << 20, 'm');
  cfg["hidden_act"] = std::string(1 << 20, 'a');
  write_checkpoint(d, cfg.dump(), 1);
  const std::string err = open_error(d);
  CHECK_THAT(err, Catch::Contains("uses hidden_act 'aaaa") && Catch::Contains("not ReLU"));
  CHECK(err.size() < 1000);
}

TEST_CASE("a 40k-tensor header parses in linear time, single and sharded") {
  // ~70 bytes per entry: 40k tensors make a 2.7 MB header, as in the issue. The old
  // parser took 70 s here (nlohmann's parser callback rescans the parent object after
  // every member) and a sharded index did a linear search per tensor.
  const int n = 40000;
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i)
    names.push_back("layers." + std::to_string(i / 16) + ".w" + std::to_string(i % 16));
  const std::string byte(1, '\x07');
  std::vector<st::WriteTensor> w;
  for (const auto& name : names) w.push_back({name, st::Dtype::kU8, {1}, byte});
  auto img = st::serialize(w);
  REQUIRE(img);
  CHECK(img->size() > 2'500'000);
  auto t0 = std::chrono::steady_clock::now();
  auto h = st::parse_file_image(*img, "big.safetensors");
  const double single = seconds_since(t0);
  REQUIRE(h);
  CHECK(h->tensors.size() == size_t(n));
  REQUIRE(h->find(names[12345]));
  CHECK(h->find(names[12345])->name == names[12345]);
  CHECK_FALSE(h->find("model.layers.0.nothing"));

  testutil::TempDir d;
  REQUIRE(st::write_sharded(d.path.string(), w, 4));
  t0 = std::chrono::steady_clock::now();
  auto s = st::Store::open(d.path.string());
  const double sharded = seconds_since(t0);
  REQUIRE(s);
  CHECK(s->names().size() == size_t(n));
  std::printf("40k-tensor header (%zu bytes): parsed in %.3f s; 4-shard store opened in %.3f s\n",
              img->size(), single, sharded);
  CHECK(single < 2.0 * kSlow);  // the issue's target is < 1 s; ~0.1 s measured (release)
  CHECK(sharded < 2.0 * kSlow);
}

TEST_CASE("FIFOs and devices as input files are refused at once, never waited on") {
  testutil::TempDir d;
  write_checkpoint(d, relu_config(1).dump(), 1);
  auto refused_fast = [](const std::function<std::string()>& f, const std::string& path) {
    REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    FifoRescuer rescue(path);
    const auto t0 = std::chrono::steady_clock::now();
    const std::string err = f();
    CHECK(seconds_since(t0) < 2.0);
    return err;
  };
  SECTION("config.json") {
    fs::remove(d / "config.json");
    CHECK_THAT(refused_fast([&] { return open_error(d); }, d / "config.json"),
               Catch::Contains("config.json: is a FIFO (named pipe), not a regular file"));
  }
  SECTION("config.json is /dev/zero (was: read without end)") {
    fs::remove(d / "config.json");
    fs::create_symlink("/dev/zero", d / "config.json");
    CHECK_THAT(open_error(d), Catch::Contains("config.json: is a character device, not a "
                                              "regular file; config.json must be a regular file"));
  }
  SECTION("model.safetensors.index.json") {
    CHECK_THAT(refused_fast([&] { return open_error(d); }, d / "model.safetensors.index.json"),
               Catch::Contains("model.safetensors.index.json: is a FIFO (named pipe)"));
  }
  SECTION("a shard") {
    testutil::TempDir s;
    testutil::write_text(s / "config.json", relu_config(1).dump());
    testutil::write_text(s / "model.safetensors.index.json",
                         R"({"weight_map":{"model.layers.0.mlp.up_proj.weight":"shard.st"}})");
    CHECK_THAT(refused_fast([&] { return open_error(s); }, s / "shard.st"),
               Catch::Contains("shard.st: is a FIFO (named pipe), not a regular file"));
  }
  SECTION("a safetensors file (--inputs)") {
    CHECK_THAT(refused_fast(
                   [&] {
                     auto st = st::Store::open(d / "inputs.safetensors");
                     return st ? std::string("(opened)") : st.error().message;
                   },
                   d / "inputs.safetensors"),
               Catch::Contains("inputs.safetensors: is a FIFO (named pipe)"));
  }
  SECTION("a profile") {
    CHECK_THAT(refused_fast(
                   [&] {
                     auto p = profile::read(d / "p.json");
                     return p ? std::string("(read)") : p.error().message;
                   },
                   d / "p.json"),
               Catch::Contains("p.json: is a FIFO (named pipe), not a regular file"));
  }
}

TEST_CASE("side files above their size cap are refused before they are read") {
  testutil::TempDir d;
  std::string cfg = relu_config(1).dump();
  cfg.insert(cfg.size() - 1, ",\"pad\":\"" + std::string(17 << 20, 'x') + "\"");
  write_checkpoint(d, cfg, 1);
  CHECK_THAT(open_error(d), Catch::Contains("config.json is 17825") &&
                                Catch::Contains("more than ffnjit reads (16 MiB)"));
  // A sparse 300 MiB profile: refused without reading 300 MiB.
  const std::string big = d / "big.json";
  testutil::write_text(big, "{");
  REQUIRE(::truncate(big.c_str(), off_t(300) << 20) == 0);
  auto p = profile::read(big);
  REQUIRE_FALSE(p);
  CHECK_THAT(p.error().message, Catch::Contains("more than ffnjit reads (256 MiB)"));
}

TEST_CASE("layer numbers: layers.01 does not silently collide with layers.1") {
  testutil::TempDir d;
  write_checkpoint(d, relu_config(2).dump(), 2, {"model.layers.01.mlp.up_proj.weight"});
  CHECK_THAT(open_error(d), Catch::Contains("model.layers.01.mlp.up_proj.weight") &&
                                Catch::Contains("layer numbers have no leading zeros"));
}

TEST_CASE("more FFN layers than config.json's num_hidden_layers is refused, naming both") {
  testutil::TempDir d;
  write_checkpoint(d, relu_config(2).dump(), 3);
  CHECK_THAT(open_error(d),
             Catch::Contains("FFN weights were found for 3 layers (0..2) but config.json's "
                             "num_hidden_layers says 2"));
}

TEST_CASE("outputs are written through a fresh temporary file, never through a symlink") {
  testutil::TempDir d;
  const std::string victim = d / "victim";
  testutil::write_text(victim, "precious");
  const std::string byte(1, '\x07');
  const std::vector<st::WriteTensor> w = {{"a", st::Dtype::kU8, {1}, byte}};
  SECTION("safetensors: a symlink at the old predictable X.tmp name is left alone") {
    fs::create_symlink(victim, d / "out.safetensors.tmp");
    REQUIRE(st::write_file(d / "out.safetensors", w));
    CHECK(read_all(victim) == "precious");
    CHECK(st::File::open(d / "out.safetensors"));
  }
  SECTION("safetensors: a symlink at the target is replaced, not written through") {
    fs::create_symlink(victim, d / "out.safetensors");
    REQUIRE(st::write_file(d / "out.safetensors", w));
    CHECK(read_all(victim) == "precious");
    CHECK_FALSE(fs::is_symlink(d / "out.safetensors"));
  }
  SECTION("profile -o: a symlink at the target is replaced, not written through") {
    fs::create_symlink(victim, d / "profile.json");
    profile::Builder b;
    REQUIRE(b.add_layer(0, 8, 16, true));
    REQUIRE(profile::write(d / "profile.json", b.finish(std::string(64, 'a'), "m", "t")));
    CHECK(read_all(victim) == "precious");
    CHECK_FALSE(fs::is_symlink(d / "profile.json"));
    CHECK(profile::read(d / "profile.json"));
  }
  SECTION("demo checkpoint: config.json and the .tmp names") {
    model::DemoOptions o;
    o.layers = 1, o.d_model = 16, o.d_ff = 16, o.tokens = 2;
    fs::create_symlink(victim, d / "config.json");
    fs::create_symlink(victim, d / "model.safetensors.tmp");
    fs::create_symlink(victim, d / "inputs.safetensors.tmp");
    REQUIRE(model::write_demo_checkpoint(d.path.string(), o));
    CHECK(read_all(victim) == "precious");
    CHECK(model::Checkpoint::open(d.path.string()));
  }
  // No temporary file (".<name>.XXXXXX") is left behind.
  for (const auto& e : fs::directory_iterator(d.path))
    CHECK(e.path().filename().string()[0] != '.');
}

TEST_CASE("strings that are not UTF-8 give errors or U+FFFD, never an exception") {
  const std::string byte(1, '\x07');
  auto img = st::serialize({{"bad\xff", st::Dtype::kU8, {1}, byte}});
  REQUIRE_FALSE(img);
  CHECK_THAT(img.error().message, Catch::Contains("not valid UTF-8"));
  profile::Builder b;
  REQUIRE(b.add_layer(0, 8, 16, true));
  const std::string text = profile::to_json(b.finish(std::string(64, 'a'), "m", "src\xff"));
  CHECK_THAT(text, Catch::Contains("src\xef\xbf\xbd"));  // U+FFFD
}
