// Host time per ffnjit_ffn_forward call with a warm cache (kernels resolved), for
// token counts that use 2 and 3 launches. The GPU work is tiny, and the queue is
// drained between batches so enqueueing never blocks on a full launch queue.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "ffnjit/ffnjit.h"
#include "model/synthetic.hpp"
#include "runtime/device.hpp"

using namespace ffnjit;

int main() {
  auto dev = Device::open(0);
  if (!dev) return std::fprintf(stderr, "%s\n", dev.error().message.c_str()), 1;
  const int dm = 2048, dff = 5632;
  auto layer = synth::make_layer(dm, dff, true, 29.0 / dff, 3);
  const size_t bytes = size_t(dm) * dff * 2;
  auto wg = *DeviceBuffer::alloc(bytes), wu = *DeviceBuffer::alloc(bytes), wd = *DeviceBuffer::alloc(bytes);
  (void)wg.upload(layer.wg.data(), bytes), (void)wu.upload(layer.wu.data(), bytes), (void)wd.upload(layer.wd.data(), bytes);
  ffnjit_context* ctx = nullptr;
  if (ffnjit_context_create(nullptr, &ctx) != FFNJIT_STATUS_OK) return std::fprintf(stderr, "%s\n", ffnjit_last_error()), 1;
  ffnjit_layer_desc d{};
  d.d_model = dm, d.d_ff = dff, d.gated = 1, d.dtype = FFNJIT_BF16, d.layer_id = "bench#0";
  d.gate_proj = reinterpret_cast<void*>(wg.ptr()), d.up_proj = reinterpret_cast<void*>(wu.ptr());
  d.down_proj = reinterpret_cast<void*>(wd.ptr());
  ffnjit_layer* l = nullptr;
  if (ffnjit_layer_register(ctx, &d, &l) != FFNJIT_STATUS_OK) return std::fprintf(stderr, "%s\n", ffnjit_last_error()), 1;
  CUstream stream;
  dev->api()->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING);
  std::printf("%8s %8s %12s %12s\n", "tokens", "launches", "median_us", "p90_us");
  for (int m : {1, 64, 2048}) {
    auto x = *DeviceBuffer::alloc(size_t(m) * dm * 2), out = *DeviceBuffer::alloc(size_t(m) * dm * 2);
    size_t ws_bytes = 0;
    ffnjit_layer_workspace_size(l, m, &ws_bytes);
    auto ws = *DeviceBuffer::alloc(ws_bytes);
    std::vector<double> us;
    for (int batch = 0; batch < 50; ++batch) {
      for (int i = 0; i < 20; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        ffnjit_status s = ffnjit_ffn_forward(l, reinterpret_cast<void*>(x.ptr()), reinterpret_cast<void*>(out.ptr()), m,
                                             reinterpret_cast<void*>(ws.ptr()), ws_bytes, stream);
        auto t1 = std::chrono::steady_clock::now();
        if (s != FFNJIT_STATUS_OK) return std::fprintf(stderr, "%s\n", ffnjit_last_error()), 1;
        if (batch > 0) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      }
      dev->api()->cuStreamSynchronize(stream);
    }
    std::sort(us.begin(), us.end());
    std::printf("%8d %8s %12.2f %12.2f\n", m, m <= 16 ? "3+1" : "2+1", us[us.size() / 2], us[us.size() * 9 / 10]);
  }
  ffnjit_layer_destroy(l);
  ffnjit_context_destroy(ctx);
  return 0;
}
