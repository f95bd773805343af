// Helpers for the model/ tests: temporary directories and hand-made safetensors images.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace ffnjit::testutil {

// A fresh directory under the system temp dir, removed when the object dies.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static std::atomic<int> n{0};
    path = std::filesystem::temp_directory_path() /
           ("ffnjit_test_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// 8-byte little-endian length + header text + data bytes.
inline std::string st_image(const std::string& header, const std::string& data,
                            uint64_t len_override = UINT64_MAX) {
  std::string out(8, '\0');
  const uint64_t n = len_override == UINT64_MAX ? header.size() : len_override;
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

}  // namespace ffnjit::testutil
