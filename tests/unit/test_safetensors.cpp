// Unit tests of the safetensors reader (one crafted bad file per validation rule), writer and
// store.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

#include "model/safetensors.hpp"
#include "support/bf16.hpp"
#include "tests/unit/model_test_util.hpp"

using namespace ffnjit;
using testutil::st_image;

namespace {

// The error message of parsing `image`, or "" when it parses.
std::string error_of(const std::string& image) {
  auto h = st::parse_file_image(image, "bad.safetensors");
  return h ? std::string() : h.error().message;
}

const std::string kOk = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

}  // namespace

TEST_CASE("a valid hand-made file parses, with metadata and a zero-sized tensor") {
  const std::string hdr =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[3],"data_offsets":[8,14]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"z":{"dtype":"I64","shape":[0,5],"data_offsets":[14,14]}})";
  auto h = st::parse_file_image(st_image(hdr + "   ", std::string(14, '\1')), "ok");
  REQUIRE(h);
  REQUIRE(h->tensors.size() == 3);
  CHECK(h->tensors[0].name == "a");  // sorted by offset
  CHECK(h->tensors[1].name == "b");
  CHECK(h->tensors[2].numel() == 0);
  CHECK(h->metadata.at("format") == "pt");
  CHECK(h->data_bytes == 14);
  CHECK(st::parse_file_image(st_image("{}", ""), "empty"));
}

TEST_CASE("every validation rule has its error, naming the file, the tensor and the rule") {
  struct Case {
    const char* rule;
    std::string image;
    std::vector<std::string> want;
  };
  const std::string d8(8, '\0');
  const Case cases[] = {
      {"shorter than the length prefix",
       std::string(5, '\0'),
       {"bad.safetensors", "fewer than the 8-byte header length"}},
      {"header length cap",
       st_image("{}", "", 100'000'001),
       {"exceeds the format's cap of 100000000"}},
      {"header length past the end",
       st_image("{}", "", 64),
       {"header length 64 runs past the end of the file"}},
      {"header must start with {", st_image(R"( {"a":1})", ""), {"does not start with '{'"}},
      {"JSON parse", st_image(R"({"a":{"dtype":"F32",)", ""), {"header JSON", "parse error"}},
      {"UTF-8", st_image("{\"\xff\xfe\":{}}", ""), {"header JSON"}},
      {"duplicate tensor",
       st_image(
           R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
           d8),
       {"key 'a' appears twice"}},
      {"metadata is an object",
       st_image(R"({"__metadata__":["x"]})", ""),
       {"__metadata__ must be an object"}},
      {"metadata values are strings",
       st_image(R"({"__metadata__":{"n":1}})", ""),
       {"__metadata__ key 'n'", "must be strings"}},
      {"tensor entry is an object",
       st_image(R"({"a":[1,2]})", ""),
       {"tensor 'a'", "must be an object"}},
      {"unknown tensor field",
       st_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", d8),
       {"tensor 'a'", "unknown field 'x'"}},
      {"dtype present",
       st_image(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "dtype missing"}},
      {"dtype known",
       st_image(R"({"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "unknown dtype 'F17'"}},
      {"shape is an array",
       st_image(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "shape missing or not an array"}},
      {"shape non-negative",
       st_image(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "non-negative integers"}},
      {"shape integers",
       st_image(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "non-negative integers"}},
      {"shape overflow",
       st_image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                d8),
       {"tensor 'a'", "overflows 64 bits"}},
      {"bytes overflow",
       st_image(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "overflows 64 bits in bytes"}},
      {"data_offsets pair",
       st_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", d8),
       {"tensor 'a'", "data_offsets must be an array [begin, end]"}},
      {"data_offsets integers",
       st_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}})", d8),
       {"tensor 'a'", "non-negative integers"}},
      {"data_offsets ordered",
       st_image(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", d8),
       {"tensor 'a'", "end before they begin"}},
      {"dtype x shape = bytes",
       st_image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8),
       {"tensor 'a'", "F32 x shape [3] needs 12 bytes", "hold 8"}},
      {"offsets in range",
       st_image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d8),
       {"tensor 'a'", "past the data section (8 bytes"}},
      {"non-overlapping",
       st_image(
           R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
           d8),
       {"tensor 'b'", "overlaps tensor 'a'"}},
      {"contiguous (gap at start)",
       st_image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8),
       {"tensor 'a' starts at byte 4", "gap of 4 bytes after the header"}},
      {"contiguous (gap between)",
       st_image(
           R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}})",
           std::string(6, '\0')),
       {"tensor 'b'", "gap of 2 bytes after tensor 'a'"}},
      {"no trailing bytes",
       st_image(kOk, std::string(12, '\0')),
       {"4 trailing bytes after the last tensor 'a'"}},
      {"no trailing bytes (no tensors)", st_image("{}", "xy"), {"2 trailing bytes"}},
  };
  for (const auto& c : cases) {
    INFO(c.rule);
    const std::string e = error_of(c.image);
    REQUIRE_FALSE(e.empty());
    CHECK(e.find("bad.safetensors: not a valid safetensors file") == 0);
    for (const auto& w : c.want) CHECK_THAT(e, Catch::Contains(w));
  }
}

TEST_CASE("File::open maps a file, and names the path in errors") {
  testutil::TempDir dir;
  testutil::write_text(dir / "ok.safetensors", st_image(kOk, std::string("\0\0\x80?\0\0\0@", 8)));
  auto f = st::File::open(dir / "ok.safetensors");
  REQUIRE(f);
  float v[2];
  std::memcpy(v, f->raw(*f->header().find("a")).data(), 8);
  CHECK(v[0] == 1.0f);
  CHECK(v[1] == 2.0f);
  testutil::write_text(dir / "trunc.safetensors", st_image(kOk, "\0\0\0"));
  auto t = st::File::open(dir / "trunc.safetensors");
  REQUIRE_FALSE(t);
  CHECK_THAT(t.error().message, Catch::Contains(dir / "trunc.safetensors") &&
                                    Catch::Contains("past the data section"));
  testutil::write_text(dir / "empty.safetensors", "");
  CHECK_THAT(st::File::open(dir / "empty.safetensors").error().message,
             Catch::Contains("fewer than the 8-byte"));
  CHECK(st::File::open(dir / "missing.safetensors").error().kind == ErrorKind::kNotFound);
  CHECK_THAT(st::File::open(dir.path.string()).error().message,
             Catch::Contains("not a regular file"));
}

TEST_CASE(
    "writer output round-trips, header padded to 8 bytes, through single and sharded stores") {
  testutil::TempDir dir;
  std::vector<uint16_t> bf = {float_to_bf16(1.5f), float_to_bf16(-2.0f), 0x7fc1 /* NaN payload */};
  std::vector<uint16_t> f16 = {0x3c00 /*1*/, 0x0001 /*min subnormal*/, 0x7c00 /*inf*/, 0xfc00,
                               0x8000};
  std::vector<float> f32 = {0.1f, -3.0f, 1e30f, 65504.0f};
  std::vector<st::WriteTensor> ts = {
      {"w.bf16", st::Dtype::kBF16, {3}, {reinterpret_cast<const char*>(bf.data()), 6}},
      {"w.f16", st::Dtype::kF16, {5, 1}, {reinterpret_cast<const char*>(f16.data()), 10}},
      {"w.f32", st::Dtype::kF32, {2, 2}, {reinterpret_cast<const char*>(f32.data()), 16}},
      {"w.empty", st::Dtype::kF32, {0}, {}},
  };
  REQUIRE(st::write_file(dir / "one.safetensors", ts, {{"k", "v"}}));
  auto img = st::serialize(ts, {{"k", "v"}});
  REQUIRE(img);
  uint64_t n;
  std::memcpy(&n, img->data(), 8);
  CHECK(n % 8 == 0);
  REQUIRE(st::write_sharded(dir.path.string(), ts, 2, {{"format", "pt"}}));
  for (const std::string& path : {dir / "one.safetensors", dir.path.string()}) {
    INFO(path);
    auto s = st::Store::open(path);
    REQUIRE(s);
    CHECK(s->names() == std::vector<std::string>{"w.bf16", "w.empty", "w.f16", "w.f32"});
    for (const auto& t : ts) CHECK(s->find(t.name)->raw() == t.bytes);  // bit-identical
    auto b = st::to_bf16(*s->find("w.bf16"));
    CHECK(*b == bf);  // bf16 passes through, NaN payload included
    auto h = st::to_f32(*s->find("w.f16"));
    CHECK((*h)[0] == 1.0f);
    CHECK((*h)[1] == std::ldexp(1.0f, -24));
    CHECK(std::isinf((*h)[2]));
    CHECK((*h)[3] == -INFINITY);
    CHECK(std::signbit((*h)[4]));
    auto fb = st::to_bf16(*s->find("w.f32"));
    for (int i = 0; i < 4; ++i) CHECK((*fb)[i] == float_to_bf16(f32[i]));
  }
  auto sharded = st::Store::open(dir.path.string());
  CHECK(sharded->sharded());
  CHECK(sharded->files().size() == 2);
  CHECK(sharded->metadata().at("total_size") == "32");
}

TEST_CASE("F16 conversion is exact for every half value") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = st::f16_to_float(uint16_t(h));
    const int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    const float sign = (h & 0x8000) ? -1.0f : 1.0f;
    if (exp == 31) {
      CHECK((mant ? std::isnan(f) : std::isinf(f)));
    } else {
      const float want =
          sign * (exp ? std::ldexp(float(1024 + mant), exp - 25) : std::ldexp(float(mant), -24));
      if (f != want) FAIL("half 0x" << std::hex << h);
    }
  }
}

TEST_CASE("non-float dtypes are refused for conversion with the tensor named") {
  testutil::TempDir dir;
  const std::string data(4, '\0');
  REQUIRE(st::write_file(dir / "q.safetensors", {{"q", st::Dtype::kI8, {4}, data}}));
  auto s = st::Store::open(dir / "q.safetensors");
  REQUIRE(s);
  auto b = st::to_bf16(*s->find("q"));
  REQUIRE_FALSE(b);
  CHECK_THAT(b.error().message, Catch::Contains("tensor 'q' has dtype I8"));
}

TEST_CASE("sharded index errors name the index, the tensor and the fix") {
  testutil::TempDir dir;
  const std::string data(4, '\0');
  REQUIRE(st::write_file(dir / "a.safetensors",
                         {{"x", st::Dtype::kF32, {1}, data}, {"y", st::Dtype::kF32, {1}, data}}));
  REQUIRE(st::write_file(dir / "b.safetensors", {{"y", st::Dtype::kF32, {1}, data}}));
  const std::string index = dir / "model.safetensors.index.json";
  auto err = [&](const std::string& text) {
    testutil::write_text(index, text);
    auto s = st::Store::open(dir.path.string());
    return s ? std::string() : s.error().message;
  };
  CHECK_THAT(err(R"({"weight_map":{"x":"a.safetensors","z":"a.safetensors"}})"),
             Catch::Contains("maps tensor 'z' to a.safetensors, which does not hold it"));
  CHECK_THAT(err(R"({"weight_map":{"x":"../a.safetensors"}})"),
             Catch::Contains("shards must be plain file names"));
  CHECK_THAT(err(R"({"weight_map":{"x":"c.safetensors"}})"),
             Catch::Contains("c.safetensors: no such file") && Catch::Contains("shard named by"));
  CHECK_THAT(err(R"({"weight_map":{"x":"a.safetensors","y":"b.safetensors"}})"),
             Catch::Contains("tensor 'y' is held by both"));
  CHECK_THAT(err(R"({"weights":{}})"), Catch::Contains("needs a \"weight_map\" object"));
  CHECK_THAT(err(R"({"weight_map":{"x":"a.safetensors","x":"a.safetensors"}})"),
             Catch::Contains("key 'x' appears twice"));
  CHECK_THAT(err("{"), Catch::Contains("not a valid index"));
  std::filesystem::remove(index);
  auto none = st::Store::open(dir.path.string());
  REQUIRE_FALSE(none);
  CHECK_THAT(none.error().message,
             Catch::Contains("holds neither model.safetensors nor model.safetensors.index.json"));
}

TEST_CASE("writer refuses inconsistent tensors") {
  const std::string data(4, '\0');
  CHECK_THAT(st::serialize({{"a", st::Dtype::kF32, {2}, data}}).error().message,
             Catch::Contains("needs 8 bytes, got 4"));
  CHECK_THAT(st::serialize({{"a", st::Dtype::kF32, {1}, data}, {"a", st::Dtype::kF32, {1}, data}})
                 .error()
                 .message,
             Catch::Contains("listed twice"));
  CHECK_THAT(st::serialize({{"__metadata__", st::Dtype::kF32, {1}, data}}).error().message,
             Catch::Contains("pick another name"));
}
