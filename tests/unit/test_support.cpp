// Unit tests of the support library: SHA-256, glob, Status/Expected.
#include <catch2/catch.hpp>

#include "support/bf16.hpp"
#include "support/hash.hpp"
#include "support/status.hpp"
#include "support/strings.hpp"

using namespace ffnjit;

TEST_CASE("sha256 matches FIPS 180-4 vectors") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  std::string million(1000000, 'a');
  CHECK(sha256_hex(million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // Incremental updates across block boundaries give the same digest.
  Sha256 h;
  for (int i = 0; i < 1000; ++i) h.update(million.data(), 1000);
  CHECK(h.hex_digest() == sha256_hex(million));
}

TEST_CASE("glob matches * and ?") {
  CHECK(glob_match("ffnjit_gate_*", "ffnjit_gate_pack_sm90a"));
  CHECK(glob_match("*sm90a*", "ffnjit_gate_pack_sm90a_bf16"));
  CHECK(glob_match("a?c", "abc"));
  CHECK_FALSE(glob_match("a?c", "abbc"));
  CHECK_FALSE(glob_match("*up_down*", "ffnjit_gate_pack"));
  CHECK(glob_match("*", ""));
}

Expected<int> half(int x) {
  if (x % 2) return user_error("odd");
  return x / 2;
}

Status quarter(int x, int* out) {
  auto h = half(x);
  FFNJIT_TRY(h);
  auto q = half(*h);
  FFNJIT_TRY(q);
  *out = *q;
  return {};
}

TEST_CASE("FFNJIT_TRY propagates the first error") {
  int out = 0;
  CHECK(quarter(8, &out));
  CHECK(out == 2);
  Status s = quarter(6, &out);
  REQUIRE_FALSE(s);
  CHECK(s.message() == "odd");
  CHECK(s.kind() == ErrorKind::kInvalidArgument);
}

TEST_CASE("bf16 conversion rounds to nearest even and keeps NaN") {
  CHECK(float_to_bf16(1.0f) == 0x3f80);
  CHECK(bf16_to_float(0x3f80) == 1.0f);
  CHECK(float_to_bf16(-2.0f) == 0xc000);
  // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  CHECK(float_to_bf16(1.00390625f) == 0x3f80);
  CHECK(float_to_bf16(1.01171875f) == 0x3f82);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isnan(bf16_to_float(float_to_bf16(nan))));
  CHECK(std::isinf(bf16_to_float(float_to_bf16(std::numeric_limits<float>::infinity()))));
}
