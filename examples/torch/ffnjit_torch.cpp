// PyTorch custom operator over the ffnjit C API: torch.ops.ffnjit.ffn(x, layer),
// plus a plain Python function to register layers (module.register_layer). The
// operator runs on the current CUDA stream and allocates through PyTorch's caching
// allocator, so it works inside torch.cuda.graphs once warmed up.
#include <ATen/cuda/CUDAContext.h>
#include <torch/extension.h>

#include <mutex>
#include <string>
#include <vector>

#include "ffnjit/ffnjit.h"

namespace {

std::mutex g_mu;
ffnjit_context* g_ctx = nullptr;
std::vector<ffnjit_layer*> g_layers;

void check(ffnjit_status s, const char* what) {
  TORCH_CHECK(s == FFNJIT_STATUS_OK, what, " failed: ", ffnjit_status_name(s), ": ", ffnjit_last_error());
}

// Registers one FFN layer (Hugging Face layouts, bf16, on one CUDA device) and
// returns its handle index. gate_proj may be None for a non-gated layer.
int64_t register_layer(const std::optional<torch::Tensor>& gate, const torch::Tensor& up, const torch::Tensor& down,
                       const std::string& layer_id) {
  TORCH_CHECK(up.is_cuda() && down.is_cuda(), "weights must be CUDA tensors");
  TORCH_CHECK(up.scalar_type() == torch::kBFloat16 && down.scalar_type() == torch::kBFloat16, "weights must be bf16");
  TORCH_CHECK(up.dim() == 2 && down.dim() == 2, "weights must be 2-D");
  auto u = up.contiguous(), d = down.contiguous();
  torch::Tensor g;
  if (gate) g = gate->contiguous();
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_ctx) {
    ffnjit_context_options o;
    ffnjit_context_options_init(&o);
    o.device = up.get_device();
    check(ffnjit_context_create(&o, &g_ctx), "ffnjit_context_create");
  }
  ffnjit_layer_desc desc{};
  desc.d_ff = int(u.size(0)), desc.d_model = int(u.size(1)), desc.gated = gate.has_value(), desc.dtype = FFNJIT_BF16;
  desc.gate_proj = gate ? g.data_ptr() : nullptr;
  desc.up_proj = u.data_ptr();
  desc.down_proj = d.data_ptr();
  desc.layer_id = layer_id.c_str();
  ffnjit_layer* layer = nullptr;
  check(ffnjit_layer_register(g_ctx, &desc, &layer), "ffnjit_layer_register");
  g_layers.push_back(layer);
  return int64_t(g_layers.size() - 1);
}

torch::Tensor ffn(const torch::Tensor& x, int64_t layer_index) {
  TORCH_CHECK(x.is_cuda() && x.scalar_type() == torch::kBFloat16, "x must be a bf16 CUDA tensor");
  ffnjit_layer* layer = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    TORCH_CHECK(layer_index >= 0 && layer_index < int64_t(g_layers.size()), "unknown layer ", layer_index);
    layer = g_layers[size_t(layer_index)];
  }
  auto xc = x.contiguous();
  const int64_t tokens = xc.numel() / xc.size(-1);
  auto out = torch::empty_like(xc);
  size_t ws_bytes = 0;
  check(ffnjit_layer_workspace_size(layer, tokens, &ws_bytes), "ffnjit_layer_workspace_size");
  auto ws = torch::empty({int64_t(ws_bytes) + 256}, xc.options().dtype(torch::kUInt8));
  auto* ws_ptr = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(ws.data_ptr()) + 255) & ~uintptr_t(255));
  check(ffnjit_ffn_forward(layer, xc.data_ptr(), out.data_ptr(), tokens, ws_ptr, ws_bytes,
                           at::cuda::getCurrentCUDAStream().stream()),
        "ffnjit_ffn_forward");
  return out;
}

}  // namespace

TORCH_LIBRARY(ffnjit, m) { m.def("ffn(Tensor x, int layer) -> Tensor"); }
TORCH_LIBRARY_IMPL(ffnjit, CUDA, m) { m.impl("ffn", ffn); }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("register_layer", &register_layer, "register an FFN layer's weights; returns its index",
        pybind11::arg("gate"), pybind11::arg("up"), pybind11::arg("down"), pybind11::arg("layer_id") = "");
}
