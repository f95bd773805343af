// Unit tests of the CLI's argument parsing (cli/args.hpp): strict integers that always fit
// their int, and the strict --shard I/N parser.
#include <catch2/catch.hpp>

#include <climits>

#include "cli/args.hpp"

using namespace ffnjit;
using namespace ffnjit::cli;

namespace {
Expected<int> int_of(const std::string& value, int min, int max) {
  Args a("test", "");
  a.option("n", "N", "");
  REQUIRE(a.parse({"--n", value}));
  return a.get_int("n", min, max);
}
}  // namespace

TEST_CASE("parse_int64 accepts exactly an optional '-' and digits, without overflow") {
  CHECK(parse_int64("0") == 0);
  CHECK(parse_int64("12") == 12);
  CHECK(parse_int64("-3") == -3);
  CHECK(parse_int64("9223372036854775807") == INT64_MAX);
  CHECK(parse_int64("-9223372036854775808") == INT64_MIN);
  for (const char* bad : {"", "-", "+3", " 12", "12 ", "1e3", "0x10", "12junk", "1.5", "--1",
                          "9223372036854775808", "-9223372036854775809", "99999999999999999999"}) {
    INFO(bad);
    CHECK_FALSE(parse_int64(bad).has_value());
  }
}

TEST_CASE("get_int: values past INT_MAX are out of range, never wrapped") {
  // `inspect --tokens 2147483648` used to pass a [1, 2^31] check and wrap to INT_MIN.
  auto big = int_of("2147483648", 1, INT_MAX);
  REQUIRE_FALSE(big);
  CHECK(big.error().message == "--n=2147483648 is out of range; use a value in [1, 2147483647]");
  CHECK(int_of("2147483647", 1, INT_MAX).value() == INT_MAX);
  CHECK(int_of("-5", -10, 10).value() == -5);
  CHECK(int_of(" 5", 0, 10).error().message == "--n must be an integer, got ' 5'");
  CHECK(int_of("5x", 0, 10).error().message == "--n must be an integer, got '5x'");
  CHECK(int_of("99999999999999999999", 0, 10).error().message ==
        "--n=99999999999999999999 is out of range; use a value in [0, 10]");
  CHECK(int_of("-99999999999999999999", 0, 10).error().message ==
        "--n=-99999999999999999999 is out of range; use a value in [0, 10]");
  Args a("test", "");
  a.option("seed", "N", "");
  REQUIRE(a.parse({"--seed", "4611686018427387904"}));
  CHECK(a.get_int64("seed", 0, int64_t(1) << 62).value() == int64_t(1) << 62);
}

TEST_CASE("parse_shard: exactly I/N with 0 <= I < N") {
  auto s = parse_shard("1/3");
  REQUIRE(s);
  CHECK(s->index == 1);
  CHECK(s->count == 3);
  CHECK(parse_shard("0/1"));
  for (const char* bad : {"1/2/3", "0/2junk", "1/2.5", "2/2", "-1/2", "0/0", "1", "/2", "0/",
                          " 0/2", "0/ 2", "+0/2", "0/65537", "a/b", "0/2/"}) {
    INFO(bad);
    auto r = parse_shard(bad);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message,
               Catch::StartsWith(std::string("--shard ") + bad + " is not I/N with integers"));
  }
}
