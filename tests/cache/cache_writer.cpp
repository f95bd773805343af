// Test helper: one process writing deterministic records into a cache, for the
// concurrency and crash tests (and to fill caches for the CLI tests).
//   cache_writer DB WRITER FIRST COUNT [START_AT_MS [ready]]
// writes binaries and tuning records FIRST .. FIRST+COUNT-1 of writer WRITER
// (COUNT -1: forever, until killed), after sleeping until START_AT_MS (Unix ms).
// With "ready", prints one byte to stdout once the cache is open.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "cache/cache.hpp"
#include "tests/cache/cache_test_util.hpp"

using namespace ffnjit::cache;

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: cache_writer DB WRITER FIRST COUNT [START_AT_MS]\n");
    return 2;
  }
  const std::string path = argv[1];
  const int writer = std::atoi(argv[2]);
  const long first = std::atol(argv[3]), count = std::atol(argv[4]);
  if (argc > 5) {
    const int64_t start_at = std::atoll(argv[5]);
    while (now_ms() < start_at) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  auto cache = Cache::open(path);
  if (!cache) {
    std::fprintf(stderr, "cache_writer %d: %s\n", writer, cache.error().message.c_str());
    return 1;
  }
  if (argc > 6 && std::string(argv[6]) == "ready") {
    std::fputc('R', stdout);
    std::fflush(stdout);
  }
  for (long i = first; count < 0 || i < first + count; ++i) {
    // Every 16th cubin spans many pages, so a kill can land in the middle of one.
    size_t bytes = i % 16 == 0 ? 40000 : 0;
    if (auto s = cache->put_binary(testing::make_binary(writer, int(i), testing::h100(), bytes));
        !s) {
      std::fprintf(stderr, "cache_writer %d: %s\n", writer, s.message().c_str());
      return 1;
    }
    if (auto s = cache->put_tuning(testing::make_tuning(writer, int(i))); !s) {
      std::fprintf(stderr, "cache_writer %d: %s\n", writer, s.message().c_str());
      return 1;
    }
  }
  return 0;
}
