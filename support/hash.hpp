// Content hashes: SHA-256 for cache keys, short hex digests for banners and names.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace ffnjit {

class Sha256 {
 public:
  Sha256();
  Sha256& update(const void* data, size_t size);
  Sha256& update(std::string_view s) { return update(s.data(), s.size()); }
  std::array<uint8_t, 32> digest();
  std::string hex_digest();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

// Lower-case hex SHA-256 of `s`.
std::string sha256_hex(std::string_view s);

// First `n` hex digits of the SHA-256 of `s` (n <= 64): for banners and labels.
std::string short_hash(std::string_view s, size_t n = 12);

}  // namespace ffnjit
