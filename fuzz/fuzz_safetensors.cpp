// libFuzzer target: the safetensors file-image parser and validator (model/safetensors.hpp)
// and the FFN tensor-name matcher that discovery runs on every accepted name
// (model/checkpoint.hpp).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "model/checkpoint.hpp"
#include "model/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // The matcher on the raw input too: it must be linear and total on any bytes.
  (void)ffnjit::model::match_ffn_tensor(bytes.substr(0, ffnjit::st::kMaxTensorNameBytes + 1));
  auto h = ffnjit::st::parse_file_image(bytes, "fuzz");
  if (!h) return 0;
  // An accepted header must describe tensors that tile the data section exactly.
  uint64_t pos = 0;
  for (const auto& t : h->tensors) {
    if (t.begin != pos || t.end < t.begin ||
        t.nbytes() != t.numel() * ffnjit::st::dtype_size(t.dtype))
      __builtin_trap();
    pos = t.end;
    if (t.name.size() > ffnjit::st::kMaxTensorNameBytes || h->find(t.name) != &t) __builtin_trap();
    auto m = ffnjit::model::match_ffn_tensor(t.name);
    // A match reassembles to the name it came from.
    if (m && *m) {
      const auto& n = **m;
      const bool llama = std::string_view(n.naming) == "llama",
                 gpt2 = std::string_view(n.naming) == "gpt2";
      const std::string back = n.prefix + (gpt2 ? "h." : "layers.") + std::to_string(n.layer) +
                               (llama || gpt2 ? ".mlp." : ".") + n.role +
                               (n.bias ? ".bias" : ".weight");
      if (back != t.name) __builtin_trap();
    }
  }
  if (pos != h->data_bytes || 8 + h->header_bytes + h->data_bytes != size) __builtin_trap();
  return 0;
}
