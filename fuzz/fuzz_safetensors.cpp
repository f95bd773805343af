// libFuzzer target: the safetensors file-image parser and validator (model/safetensors.hpp).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "model/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto h = ffnjit::st::parse_file_image(bytes, "fuzz");
  if (!h) return 0;
  // An accepted header must describe tensors that tile the data section exactly.
  uint64_t pos = 0;
  for (const auto& t : h->tensors) {
    if (t.begin != pos || t.end < t.begin ||
        t.nbytes() != t.numel() * ffnjit::st::dtype_size(t.dtype))
      __builtin_trap();
    pos = t.end;
  }
  if (pos != h->data_bytes || 8 + h->header_bytes + h->data_bytes != size) __builtin_trap();
  return 0;
}
