// libFuzzer target: the strict profile reader (model/profile.hpp); accepted input must round-trip.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "model/profile.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto p = ffnjit::profile::parse(text, "fuzz");
  if (!p) return 0;
  // What the reader accepts, the writer reproduces and the reader accepts again unchanged.
  const std::string once = ffnjit::profile::to_json(*p);
  auto again = ffnjit::profile::parse(once, "fuzz-roundtrip");
  if (!again || ffnjit::profile::to_json(*again) != once) __builtin_trap();
  return 0;
}
