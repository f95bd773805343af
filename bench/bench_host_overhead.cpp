// Host time per ffnjit_ffn_forward call with a warm cache (kernels resolved), next to
// its floor: the host time of one bare cuLaunchKernel of an empty kernel, timed the
// same way. Each forward's kernel count comes from capturing one call into a CUDA
// graph. Repeated calls with the same arguments replay ffnjit's cached graph (one
// cuGraphLaunch, runtime/forward_graph.hpp); the "args change" rows defeat that
// cache, so there forward ~= kernels x floor + ffnjit's own overhead.
// The GPU work is tiny, and the queue is drained between batches so enqueueing
// never blocks on a full launch queue.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "codegen/compile.hpp"
#include "codegen/source.hpp"
#include "ffnjit/ffnjit.h"
#include "model/synthetic.hpp"
#include "runtime/device.hpp"

using namespace ffnjit;

namespace {

struct Timing {
  double median = 0, p90 = 0;
};

// Host time of one `call()`: 50 batches of 20 calls, the stream drained after each
// batch, the first batch dropped as warm-up (980 samples). `call` returns false on
// failure (and has printed why).
template <class F>
bool time_host(const drv::Api* cu, CUstream stream, F&& call, Timing* t) {
  std::vector<double> us;
  for (int batch = 0; batch < 50; ++batch) {
    for (int i = 0; i < 20; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      const bool ok = call();
      auto t1 = std::chrono::steady_clock::now();
      if (!ok) return false;
      if (batch > 0) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    cu->cuStreamSynchronize(stream);
  }
  std::sort(us.begin(), us.end());
  t->median = us[us.size() / 2], t->p90 = us[us.size() * 9 / 10];
  return true;
}

// Nodes of a captured graph: kernels and everything else (memsets, copies, child
// graphs). Graph queries are not in the runtime's driver table; they come from the
// libcuda.so.1 it already loaded. -1: could not be counted.
struct NodeCount {
  int kernels = -1, other = -1;
};

NodeCount count_nodes(CUgraph graph) {
  NodeCount n;
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  if (!lib) return n;
  auto get_nodes = reinterpret_cast<decltype(&::cuGraphGetNodes)>(dlsym(lib, "cuGraphGetNodes"));
  auto node_type =
      reinterpret_cast<decltype(&::cuGraphNodeGetType)>(dlsym(lib, "cuGraphNodeGetType"));
  size_t count = 0;
  if (get_nodes && node_type && get_nodes(graph, nullptr, &count) == CUDA_SUCCESS) {
    std::vector<CUgraphNode> nodes(count);
    if (get_nodes(graph, nodes.data(), &count) == CUDA_SUCCESS) {
      n.kernels = n.other = 0;
      for (size_t i = 0; i < count; ++i) {
        CUgraphNodeType type;
        if (node_type(nodes[i], &type) != CUDA_SUCCESS) return dlclose(lib), NodeCount{};
        ++(type == CU_GRAPH_NODE_TYPE_KERNEL ? n.kernels : n.other);
      }
    }
  }
  dlclose(lib);
  return n;
}

void print_row(const std::string& what, NodeCount n, Timing t, double floor_us) {
  char kernels[16] = "?", other[16] = "?", floor_k[16] = "?", rest[16] = "?";
  if (n.kernels >= 0) {
    std::snprintf(kernels, sizeof kernels, "%d", n.kernels);
    std::snprintf(other, sizeof other, "%d", n.other);
    std::snprintf(floor_k, sizeof floor_k, "%.2f", n.kernels * floor_us);
    std::snprintf(rest, sizeof rest, "%.2f", t.median - n.kernels * floor_us);
  }
  std::printf("%-16s %7s %5s %9.2f %9.2f %16s %8s\n", what.c_str(), kernels, other, t.median, t.p90,
              floor_k, rest);
}

}  // namespace

int main() {
  auto dev = Device::open(0);
  if (!dev) return std::fprintf(stderr, "%s\n", dev.error().message.c_str()), 1;
  const drv::Api* cu = dev->api();
  if (Status s = dev->make_current(); !s)
    return std::fprintf(stderr, "%s\n", s.error().message.c_str()), 1;
  CUstream stream;
  cu->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING);

  // The floor: an empty kernel, compiled with NVRTC and loaded as the runtime loads
  // its kernels, launched with a bare cuLaunchKernel.
  auto arch = parse_arch(dev->info().arch);
  if (!arch) return std::fprintf(stderr, "%s\n", arch.error().message.c_str()), 1;
  Source src;
  src.spec.arch = *arch;
  src.kernel_name = "ffnjit_empty";
  src.text = "extern \"C\" __global__ void ffnjit_empty() {}\n";
  auto empty = compile(src);
  if (!empty) return std::fprintf(stderr, "%s\n", empty.error().message.c_str()), 1;
  CUmodule module = nullptr;
  CUfunction fn = nullptr;
  if (cu->cuModuleLoadData(&module, empty->cubin.data()) != CUDA_SUCCESS ||
      cu->cuModuleGetFunction(&fn, module, empty->lowered_name.c_str()) != CUDA_SUCCESS)
    return std::fprintf(stderr, "could not load the empty kernel\n"), 1;
  auto launch_empty = [&] {
    CUresult r = cu->cuLaunchKernel(fn, 1, 1, 1, 32, 1, 1, 0, stream, nullptr, nullptr);
    if (r != CUDA_SUCCESS)
      std::fprintf(stderr, "cuLaunchKernel: %s\n", drv::result_name(r).c_str());
    return r == CUDA_SUCCESS;
  };
  Timing floor;
  if (!time_host(cu, stream, launch_empty, &floor)) return 1;

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

  std::printf("host us per call (980 calls, batches of 20, stream drained between batches); %s\n",
              dev->info().name.c_str());
  std::printf("%-16s %7s %5s %9s %9s %16s %8s\n", "call", "kernels", "other", "median_us", "p90_us",
              "kernels*floor_us", "rest_us");
  print_row("empty kernel", {1, 0}, floor, floor.median);
  for (int m : {1, 64, 2048}) {
    auto x = *DeviceBuffer::alloc(size_t(m) * dm * 2), out = *DeviceBuffer::alloc(size_t(m) * dm * 2);
    size_t ws_bytes = 0;
    ffnjit_layer_workspace_size(l, m, &ws_bytes);
    auto ws = *DeviceBuffer::alloc(ws_bytes);
    auto forward = [&] {
      ffnjit_status s = ffnjit_ffn_forward(l, reinterpret_cast<void*>(x.ptr()),
                                           reinterpret_cast<void*>(out.ptr()), m,
                                           reinterpret_cast<void*>(ws.ptr()), ws_bytes, stream);
      if (s != FFNJIT_STATUS_OK) std::fprintf(stderr, "%s\n", ffnjit_last_error());
      return s == FFNJIT_STATUS_OK;
    };
    // What one forward enqueues, counted from a graph capture of it.
    NodeCount n;
    CUgraph graph = nullptr;
    if (cu->cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL) == CUDA_SUCCESS) {
      const bool ok = forward();
      if (cu->cuStreamEndCapture(stream, &graph) == CUDA_SUCCESS && graph) {
        if (ok) n = count_nodes(graph);
      }
      if (!ok) return 1;
    }
    Timing t;
    if (!time_host(cu, stream, forward, &t)) return 1;
    print_row("forward m=" + std::to_string(m), n, t, floor.median);
    // The same with the output pointer changing on every call: no call repeats its
    // predecessor's arguments, so every one launches its kernels directly.
    auto out2 = *DeviceBuffer::alloc(size_t(m) * dm * 2);
    bool flip = false;
    auto forward_direct = [&] {
      flip = !flip;
      ffnjit_status s = ffnjit_ffn_forward(l, reinterpret_cast<void*>(x.ptr()),
                                           reinterpret_cast<void*>((flip ? out2 : out).ptr()), m,
                                           reinterpret_cast<void*>(ws.ptr()), ws_bytes, stream);
      if (s != FFNJIT_STATUS_OK) std::fprintf(stderr, "%s\n", ffnjit_last_error());
      return s == FFNJIT_STATUS_OK;
    };
    Timing td;
    if (!time_host(cu, stream, forward_direct, &td)) return 1;
    print_row("  args change", n, td, floor.median);
    // For comparison: replaying the captured forward as one graph launch.
    CUgraphExec exec = nullptr;
    if (graph && cu->cuGraphInstantiate(&exec, graph, 0) == CUDA_SUCCESS) {
      Timing tg;
      if (time_host(cu, stream, [&] { return cu->cuGraphLaunch(exec, stream) == CUDA_SUCCESS; }, &tg))
        print_row("graph m=" + std::to_string(m), {0, 1}, tg, floor.median);
      cu->cuGraphExecDestroy(exec);
    }
    if (graph) cu->cuGraphDestroy(graph);
  }
  ffnjit_layer_destroy(l);
  ffnjit_context_destroy(ctx);
  cu->cuModuleUnload(module);
  cu->cuStreamDestroy(stream);
  return 0;
}
